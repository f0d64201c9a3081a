"""Adapters between model functions and the sampler's denoiser D(x, sigma), and wrappers on D.

Models (each becomes `denoise(x, sigma, **extra) -> x0`, see `core`):
- `discrete_denoiser`: a network trained on a `DiscreteSchedule`'s integer timesteps predicting eps,
  x0, v or EDM-preconditioned output. A sigma between two table entries gets the fractional timestep
  interpolated in log sigma (the network's time embedding is continuous).
- `continuous_denoiser`: a network of continuous time t with alpha(t), sigma(t) and t(sigma) given.
- `velocity_denoiser`: a rectified-flow velocity v(x_t, t) on x_t = t x_data + (1 - t) noise.
- `denoiser_velocity`: the reverse, for the flow integrators.
Wrappers: `clip_x0`, `dynamic_threshold` (Imagen), `classifier_free_guidance` (one batched call of
both branches, negative prompts, guidance rescale).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion import parameterization
from jaxgen.diffusion.ddpm import Prediction
from jaxgen.diffusion.schedules import DiscreteSchedule
from jaxgen.samplers.core import per_example, split_output


def _vp_alpha_sigma(sigma):
  """A VP process with noise-to-signal ratio sigma: alpha = 1 / sqrt(1 + sigma^2)."""
  alpha = jax.lax.rsqrt(1.0 + jnp.square(sigma))
  return alpha, sigma * alpha


def fractional_timestep(schedule: DiscreteSchedule, sigma):
  """The (fractional) timestep whose sigma is `sigma`: linear interpolation in log sigma between
  table entries, clamped to [0, T - 1]. Exact (an integer) at the table's own sigmas."""
  log_table = -0.5 * schedule.log_snr  # log sigma_t, increasing in t
  return jnp.interp(jnp.log(sigma), log_table, jnp.arange(schedule.num_timesteps, dtype=jnp.float32))


def _network_prediction(apply, prediction, x, sigma, alpha, sigma_vp, net_t, sigma_data, extra):
  x_t = alpha * x
  if prediction == "edm":
    net_t = parameterization.edm_preconditioning(sigma, sigma_data)[3]
  net_x = parameterization.network_input(prediction, x_t, alpha, sigma_vp, sigma_data)
  batch_t = per_example(net_t, x.shape[0])
  result = apply(net_x, batch_t, **extra)
  output, var_output = result if isinstance(result, tuple) else (result, None)
  x0, eps = parameterization.to_x0_eps(prediction, output, x_t, alpha, sigma_vp, sigma_data)
  return Prediction(x0, eps, var_output, output)


def discrete_denoiser(apply: Callable, schedule: DiscreteSchedule, prediction: str = "eps",
                      sigma_data: float = 0.5, timestep_of: Callable | None = None) -> Callable:
  """D(x, sigma) of `apply(net_x, net_t, **extra) -> output` or `(output, var_output)`, a network
  trained on `schedule`'s timesteps. timestep_of(sigma) overrides the log-sigma interpolation (for
  respaced grids whose network timesteps are known exactly). Returns a `Prediction`."""
  def denoise(x, sigma, **extra):
    alpha, sigma_vp = _vp_alpha_sigma(sigma)
    t = fractional_timestep(schedule, sigma) if timestep_of is None else timestep_of(sigma)
    return _network_prediction(apply, prediction, x, sigma, alpha, sigma_vp, t, sigma_data, extra)
  return denoise


def continuous_denoiser(apply: Callable, alpha_sigma: Callable, time_of_sigma: Callable,
                        prediction: str = "eps", sigma_data: float = 0.5) -> Callable:
  """D(x, sigma) of a continuous-time network apply(net_x, t, **extra) on x_t = alpha(t) x_0 +
  sigma(t) eps; time_of_sigma inverts sigma(t) / alpha(t) (e.g. from `schedules.vp_linear`)."""
  def denoise(x, sigma, **extra):
    t = time_of_sigma(sigma)
    alpha, sigma_t = alpha_sigma(t)
    # The network saw x_t = alpha x_0 + sigma_t eps; x (VE scaling) times alpha is that x_t.
    return _network_prediction(apply, prediction, x, sigma, alpha, sigma_t, t, sigma_data, extra)
  return denoise


def velocity_denoiser(velocity: Callable) -> Callable:
  """D(x, sigma) of a flow velocity v(x_t, t) on x_t = t x_data + (1 - t) noise (t = 1: data):
  at t = 1 / (1 + sigma), x_t = t x and x_data = x_t + (1 - t) v."""
  def denoise(x, sigma, **extra):
    t = 1.0 / (1.0 + sigma)
    x_t = t * x
    return x_t + (1.0 - t) * velocity(x_t, per_example(t, x.shape[0]), **extra)
  return denoise


def denoiser_velocity(denoise: Callable) -> Callable:
  """The flow velocity v(x_t, t) = x_data - noise of a denoiser: with sigma = (1 - t) / t and
  D = D(x_t / t, sigma), the noise estimate is (x_t - t D) / (1 - t) and v = D - noise. Undefined at
  t = 1 (no noise to estimate); the flow integrators never evaluate there."""
  def velocity(x_t, t, **extra):
    t = jnp.asarray(t, jnp.float32).reshape(-1)[0]
    sigma = (1.0 - t) / t
    x0 = split_output(denoise(x_t / t, sigma, **extra))[0]
    return x0 - (x_t - t * x0) / (1.0 - t)
  return velocity


def _map_x0(out, fn):
  x0, var = split_output(out)
  new = fn(x0)
  if isinstance(out, Prediction):
    return out._replace(x0=new, eps=None)
  return new


def clip_x0(denoise: Callable, low: float = -1.0, high: float = 1.0) -> Callable:
  """Static thresholding: D clipped to the data range (DDPM's sampler clips its x0 estimate)."""
  return lambda x, sigma, **extra: _map_x0(denoise(x, sigma, **extra),
                                           lambda x0: jnp.clip(x0, low, high))


def dynamic_threshold(denoise: Callable, percentile: float = 0.995, max_value: float = 1.0) -> Callable:
  """Imagen's dynamic thresholding (Saharia et al. 2022, section 2.3): per sample, s = the
  `percentile` quantile of |x0|, at least max_value; x0 <- clip(x0, -s, s) / s * max_value. Keeps
  pixel-space samples in range at high guidance without static clipping's saturation."""
  def threshold(x0):
    flat = jnp.abs(x0.reshape(x0.shape[0], -1))
    s = jnp.maximum(jnp.quantile(flat, percentile, axis=1), max_value)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s * max_value
  return lambda x, sigma, **extra: _map_x0(denoise(x, sigma, **extra), threshold)


def classifier_free_guidance(denoise: Callable, scale, *, cond_key: str = "labels",
                             uncond=None, negative=None, rescale=0.0) -> Callable:
  """Guided D = D_neg + w (D_cond - D_neg), both branches in one batched call of `denoise`.

  `denoise(x, sigma, **extra)` takes the conditioning in extra[cond_key] (a batch-leading array);
  the unconditional branch uses `uncond` (e.g. the null label, broadcast to the batch) or, for
  negative conditioning, `negative` (a batch of conditions to steer away from). scale w is traced
  (w = 1: conditional, 0: unconditional / negative). rescale phi in [0, 1] applies guidance rescale
  (Lin et al. 2024, eq. 15-16) to the x0 estimate: D <- phi D std(D_cond) / std(D) + (1 - phi) D,
  stds per sample, against the over-exposure of high w. The learned variance, if any, is the
  conditional branch's."""
  if (uncond is None) == (negative is None):
    raise ValueError("pass exactly one of uncond (the null condition) and negative")

  def guided(x, sigma, **extra):
    cond = extra.pop(cond_key)
    other = negative if negative is not None else jnp.broadcast_to(uncond, cond.shape)
    both = dict(extra, **{cond_key: jnp.concatenate([cond, other])})
    out = denoise(jnp.concatenate([x, x]), sigma, **both)
    x0_both, var_both = split_output(out)
    x0_cond, x0_other = jnp.split(x0_both, 2)
    x0 = x0_other + scale * (x0_cond - x0_other)
    axes = tuple(range(1, x0.ndim))
    ratio = jnp.std(x0_cond, axis=axes, keepdims=True) / (jnp.std(x0, axis=axes, keepdims=True) + 1e-12)
    x0 = rescale * (x0 * ratio) + (1.0 - rescale) * x0
    if var_both is not None:
      return Prediction(x0, None, jnp.split(var_both, 2)[0], None)
    return x0
  return guided
