"""Noise schedules and the quantities losses and samplers derive from them.

Discrete time (Ho et al. 2020 notation): alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s,
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), and the posterior
q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, betatilde_t I) with betatilde_t =
beta_t (1 - abar_{t-1}) / (1 - abar_t). Timesteps are 0-based here: index t in [0, T) is the paper's
step t + 1.

Every schedule is also described by (alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)), its
log-SNR log(alpha^2 / sigma^2), and the equivalent variance-exploding noise level
sigma_t / alpha_t (EDM's sigma: x_t / alpha_t = x_0 + (sigma_t / alpha_t) eps).

Continuous time (t in [0, 1]) has the same quantities as functions: `vp_linear`, `vp_cosine` and `ve`
return (alpha(t), sigma(t)). `karras_sigmas` is EDM's time discretisation.

Beta tables are computed in float64 (as the reference implementations do) and stored float32.
"""

from __future__ import annotations

import math

import flax.struct
import jax.numpy as jnp
import numpy as np

BETA_SCHEDULES = ("linear", "cosine", "scaled_linear", "sigmoid")


# ----------------------------------------------------------------------------- discrete betas

def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """DDPM's linear schedule (Ho et al. 2020: 1e-4 .. 0.02 over T = 1000)."""
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085,
                        beta_end: float = 0.012) -> np.ndarray:
  """Stable Diffusion's schedule: linear in sqrt(beta), then squared."""
  return np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=np.float64) ** 2


def betas_from_alphas_cumprod(abar: np.ndarray, max_beta: float = 0.999) -> np.ndarray:
  """beta_t = 1 - abar_t / abar_{t-1} (abar_{-1} = 1), clipped at max_beta so the last steps do
  not destroy the signal in one jump (Nichol & Dhariwal 2021 clip at 0.999)."""
  abar = np.asarray(abar, np.float64)
  betas = 1.0 - abar / np.append(1.0, abar[:-1])
  return np.minimum(betas, max_beta)


def cosine_alphas_cumprod(num_timesteps: int, s: float = 0.008) -> np.ndarray:
  """Improved DDPM's abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), t = 1..T."""
  f = lambda u: np.cos((u + s) / (1.0 + s) * math.pi / 2) ** 2
  t = np.arange(1, num_timesteps + 1, dtype=np.float64) / num_timesteps
  return f(t) / f(0.0)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  return betas_from_alphas_cumprod(cosine_alphas_cumprod(num_timesteps, s), max_beta)


def sigmoid_alphas_cumprod(num_timesteps: int, start: float = -3.0, end: float = 3.0,
                           tau: float = 1.0) -> np.ndarray:
  """The sigmoid schedule of Jabri et al. / Chen (2023, "On the importance of noise scheduling"):
  abar(t) = (sig(end/tau) - sig((t (end - start) + start) / tau)) / (sig(end/tau) - sig(start/tau))."""
  sig = lambda z: 1.0 / (1.0 + np.exp(-z))
  t = np.arange(1, num_timesteps + 1, dtype=np.float64) / num_timesteps
  v_start, v_end = sig(start / tau), sig(end / tau)
  return (v_end - sig((t * (end - start) + start) / tau)) / (v_end - v_start)


def sigmoid_betas(num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                  max_beta: float = 0.999) -> np.ndarray:
  return betas_from_alphas_cumprod(sigmoid_alphas_cumprod(num_timesteps, start, end, tau), max_beta)


def make_betas(name: str, num_timesteps: int, **params) -> np.ndarray:
  """The named beta schedule. params: beta_start/beta_end (linear, scaled_linear), s (cosine),
  start/end/tau (sigmoid), max_beta (cosine, sigmoid); unknown params are ignored."""
  pick = lambda *keys: {k: params[k] for k in keys if params.get(k) is not None}
  if name == "linear":
    return linear_betas(num_timesteps, **pick("beta_start", "beta_end"))
  if name == "scaled_linear":
    return scaled_linear_betas(num_timesteps, **pick("beta_start", "beta_end"))
  if name == "cosine":
    return cosine_betas(num_timesteps, **pick("s", "max_beta"))
  if name == "sigmoid":
    return sigmoid_betas(num_timesteps, **pick("start", "end", "tau", "max_beta"))
  raise ValueError(f"unknown schedule '{name}' (available: {', '.join(BETA_SCHEDULES)})")


def check_betas(betas: np.ndarray) -> None:
  """Raises ValueError unless every beta lies in (0, 1), i.e. abar strictly decreases from 1 towards
  0 (a schedule whose noise level ever falls is not a forward process)."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or len(betas) < 1:
    raise ValueError("betas must be a non-empty 1-D array")
  if not np.all(np.isfinite(betas)) or not np.all((betas > 0) & (betas < 1)):
    raise ValueError(f"betas must lie in (0, 1); got min {betas.min():g}, max {betas.max():g}")


def respace_betas(betas: np.ndarray, timesteps) -> np.ndarray:
  """Betas of the process that visits only `timesteps` (increasing indices into the original T):
  beta'_k = 1 - abar_{t_k} / abar_{t_{k-1}}, which keeps every kept marginal q(x_t | x_0) exactly
  (Nichol & Dhariwal 2021, section 4)."""
  timesteps = np.asarray(timesteps)
  if timesteps.ndim != 1 or len(timesteps) < 1 or np.any(np.diff(timesteps) <= 0):
    raise ValueError("respaced timesteps must be a non-empty strictly increasing sequence")
  if timesteps[0] < 0 or timesteps[-1] >= len(betas):
    raise ValueError(f"respaced timesteps must lie in [0, {len(betas)}); got "
                     f"{timesteps[0]}..{timesteps[-1]}")
  abar = np.cumprod(1.0 - np.asarray(betas, np.float64))[timesteps]
  return 1.0 - abar / np.append(1.0, abar[:-1])


def spaced_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
  """`steps` evenly spaced indices of [0, T) including both ends (improved DDPM's respacing)."""
  if not 1 <= steps <= num_timesteps:
    raise ValueError(f"steps must lie in [1, {num_timesteps}], got {steps}")
  if steps == 1:
    return np.array([num_timesteps - 1])
  return np.unique(np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64))


@flax.struct.dataclass
class DiscreteSchedule:
  """Per-timestep tables (float32 arrays of length T), computed in float64 from the betas."""
  betas: jnp.ndarray
  alphas_cumprod: jnp.ndarray
  alphas_cumprod_prev: jnp.ndarray
  sqrt_alphas_cumprod: jnp.ndarray
  sqrt_one_minus_alphas_cumprod: jnp.ndarray
  posterior_variance: jnp.ndarray
  posterior_log_variance_clipped: jnp.ndarray
  posterior_mean_coef_x0: jnp.ndarray
  posterior_mean_coef_xt: jnp.ndarray
  log_snr: jnp.ndarray  # log(abar / (1 - abar))
  log_betas: jnp.ndarray

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  @property
  def sigmas(self) -> jnp.ndarray:
    """EDM's sigma_t = sqrt((1 - abar_t) / abar_t), the noise level of x_t / sqrt(abar_t)."""
    return jnp.exp(-0.5 * self.log_snr)

  @classmethod
  def from_betas(cls, betas) -> "DiscreteSchedule":
    check_betas(betas)
    b = np.asarray(betas, np.float64)
    alphas = 1.0 - b
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    post_var = b * (1.0 - abar_prev) / (1.0 - abar)
    # The posterior variance is 0 at t=0; the reference clips its log to the next value.
    post_logvar = np.log(np.append(post_var[1], post_var[1:])) if len(b) > 1 else np.log(b)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return cls(
        betas=f32(b), alphas_cumprod=f32(abar), alphas_cumprod_prev=f32(abar_prev),
        sqrt_alphas_cumprod=f32(np.sqrt(abar)),
        sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - abar)),
        posterior_variance=f32(post_var), posterior_log_variance_clipped=f32(post_logvar),
        posterior_mean_coef_x0=f32(b * np.sqrt(abar_prev) / (1.0 - abar)),
        posterior_mean_coef_xt=f32((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)),
        log_snr=f32(np.log(abar) - np.log1p(-abar)), log_betas=f32(np.log(b)))


def make_schedule(name: str, num_timesteps: int, beta_start: float | None = None,
                  beta_end: float | None = None, **params) -> DiscreteSchedule:
  return DiscreteSchedule.from_betas(
      make_betas(name, num_timesteps, beta_start=beta_start, beta_end=beta_end, **params))


def extract(table: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """table[t] shaped to broadcast against a batch of rank `ndim`."""
  return table[t].reshape(t.shape + (1,) * (ndim - t.ndim))


# ----------------------------------------------------------------------------- continuous time

def vp_linear(t, beta_min: float = 0.1, beta_max: float = 20.0):
  """Song et al.'s VP SDE with beta(t) = beta_min + t (beta_max - beta_min): the T -> infinity
  limit of DDPM's linear betas (beta_i = beta(i/T) / T). Returns (alpha(t), sigma(t)) with
  alpha = exp(-1/2 int_0^t beta) and alpha^2 + sigma^2 = 1."""
  log_alpha = -0.25 * jnp.square(t) * (beta_max - beta_min) - 0.5 * t * beta_min
  return jnp.exp(log_alpha), jnp.sqrt(-jnp.expm1(2.0 * log_alpha))


def vp_cosine(t, s: float = 0.008):
  """The continuous cosine schedule: alpha(t) = cos(((t + s) / (1 + s)) pi/2) / cos((s / (1 + s)) pi/2)."""
  alpha = jnp.cos((t + s) / (1.0 + s) * math.pi / 2) / math.cos(s / (1.0 + s) * math.pi / 2)
  return alpha, jnp.sqrt(jnp.clip(1.0 - jnp.square(alpha), 0.0, 1.0))


def ve(t, sigma_min: float = 0.01, sigma_max: float = 50.0):
  """Song et al.'s VE SDE: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
  return jnp.ones_like(t), sigma_min * (sigma_max / sigma_min) ** t


def log_snr(alpha, sigma):
  return 2.0 * (jnp.log(alpha) - jnp.log(sigma))


def karras_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0, append_zero: bool = True) -> np.ndarray:
  """EDM's discretisation (Karras et al. 2022, eq. 5): sigma_i = (sigma_max^(1/rho) + i/(N-1)
  (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for i = 0..N-1, descending; then sigma_N = 0."""
  if num_steps < 1 or not 0 < sigma_min < sigma_max or rho <= 0:
    raise ValueError(f"karras_sigmas needs num_steps >= 1, 0 < sigma_min < sigma_max, rho > 0; got "
                     f"{num_steps}, {sigma_min}, {sigma_max}, {rho}")
  ramp = np.linspace(0.0, 1.0, num_steps) if num_steps > 1 else np.zeros(1)
  inv_rho_max, inv_rho_min = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
  sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
  return np.append(sigmas, 0.0) if append_zero else sigmas
