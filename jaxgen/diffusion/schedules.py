"""Discrete-time noise schedules and the quantities losses and samplers derive from them.

Notation of Ho et al. (2020): alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s,
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), and the posterior
q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, betatilde_t I) with betatilde_t =
beta_t (1 - abar_{t-1}) / (1 - abar_t). Timesteps are 0-based here: index t in [0, T) is the paper's
step t + 1.
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """DDPM's linear schedule (float64, as the reference computes it)."""
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def check_betas(betas: np.ndarray) -> None:
  """Raises ValueError unless 0 < beta < 1 and abar strictly decreases."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or len(betas) < 1:
    raise ValueError("betas must be a non-empty 1-D array")
  if not np.all((betas > 0) & (betas < 1)):
    raise ValueError(f"betas must lie in (0, 1); got min {betas.min():g}, max {betas.max():g}")


@flax.struct.dataclass
class DiscreteSchedule:
  """Per-timestep tables (float32 arrays of length T), computed in float64 from the betas."""
  betas: jnp.ndarray
  alphas_cumprod: jnp.ndarray
  alphas_cumprod_prev: jnp.ndarray
  sqrt_alphas_cumprod: jnp.ndarray
  sqrt_one_minus_alphas_cumprod: jnp.ndarray
  sqrt_recip_alphas_cumprod: jnp.ndarray
  sqrt_recipm1_alphas_cumprod: jnp.ndarray
  posterior_variance: jnp.ndarray
  posterior_log_variance_clipped: jnp.ndarray
  posterior_mean_coef_x0: jnp.ndarray
  posterior_mean_coef_xt: jnp.ndarray

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

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
        sqrt_recip_alphas_cumprod=f32(np.sqrt(1.0 / abar)),
        sqrt_recipm1_alphas_cumprod=f32(np.sqrt(1.0 / abar - 1.0)),
        posterior_variance=f32(post_var), posterior_log_variance_clipped=f32(post_logvar),
        posterior_mean_coef_x0=f32(b * np.sqrt(abar_prev) / (1.0 - abar)),
        posterior_mean_coef_xt=f32((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)))


def make_schedule(name: str, num_timesteps: int, beta_start: float, beta_end: float) -> DiscreteSchedule:
  if name == "linear":
    return DiscreteSchedule.from_betas(linear_betas(num_timesteps, beta_start, beta_end))
  raise ValueError(f"unknown schedule '{name}' (available: linear)")


def extract(table: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
  """table[t] shaped to broadcast against a batch of rank `ndim`."""
  return table[t].reshape(t.shape + (1,) * (ndim - t.ndim))
