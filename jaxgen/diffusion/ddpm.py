"""DDPM's forward process, its posterior, and the reverse step a network defines.

The network is any function `apply(net_x, net_t) -> (output, var_output)`: `output` is its
prediction in the chosen parameterization (see `parameterization`), `var_output` is None for fixed
reverse variances or, with a learned variance (Nichol & Dhariwal 2021), the per-element value v in
[-1, 1] (roughly) that interpolates log sigma^2 = frac log beta_t + (1 - frac) log betatilde_t,
frac = (v + 1) / 2.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.diffusion import parameterization
from jaxgen.diffusion.schedules import DiscreteSchedule, extract

VARIANCES = ("fixed_small", "fixed_large", "learned")


class Prediction(NamedTuple):
  """The network's estimate at (x_t, t), in the forms samplers and bounds use."""
  x0: jax.Array
  eps: jax.Array
  var_output: jax.Array | None = None  # the learned-variance output, when the model has one
  output: jax.Array | None = None  # the raw network output (in its parameterization)


def q_sample(schedule: DiscreteSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """The closed-form jump x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
  return (extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
          + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)


def alpha_sigma(schedule: DiscreteSchedule, t: jax.Array, ndim: int):
  return (extract(schedule.sqrt_alphas_cumprod, t, ndim),
          extract(schedule.sqrt_one_minus_alphas_cumprod, t, ndim))


def posterior_mean(schedule: DiscreteSchedule, x0, x_t, t):
  return (extract(schedule.posterior_mean_coef_x0, t, x_t.ndim) * x0
          + extract(schedule.posterior_mean_coef_xt, t, x_t.ndim) * x_t)


def predict(apply: Callable, schedule: DiscreteSchedule, x_t: jax.Array, t: jax.Array, *,
            prediction: str = "eps", model_t: jax.Array | None = None,
            sigma_data: float = 0.5) -> Prediction:
  """Runs the network at (x_t, t) and converts its output to x0 and eps.

  t indexes `schedule`; `model_t` (default t) is the timestep the network was trained with, which
  differs from t when sampling a respaced schedule. With EDM preconditioning the network sees
  c_in x_t / alpha and c_noise(sigma / alpha) instead of (x_t, t).
  """
  alpha, sigma = alpha_sigma(schedule, t, x_t.ndim)
  if prediction == "edm":
    s = (sigma / alpha).reshape(t.shape)
    net_t = parameterization.edm_preconditioning(s, sigma_data)[3]
  else:
    net_t = t if model_t is None else model_t
  net_x = parameterization.network_input(prediction, x_t, alpha, sigma, sigma_data)
  output, var_output = apply(net_x, net_t)
  x0, eps = parameterization.to_x0_eps(prediction, output, x_t, alpha, sigma, sigma_data)
  return Prediction(x0, eps, var_output, output)


def from_eps(schedule: DiscreteSchedule, eps_fn: Callable) -> Callable:
  """Adapts `eps_fn(x_t, t) -> eps` to the `denoise(x_t, t) -> Prediction` samplers take."""
  return lambda x_t, t: predict(lambda x, s: (eps_fn(x, s), None), schedule, x_t, t)


def reverse_log_variance(schedule: DiscreteSchedule, variance) -> jax.Array:
  """log of the fixed reverse-process variance per timestep: Ho et al.'s choices by name, or a
  given array of T log-variances."""
  if not isinstance(variance, str):
    return jnp.asarray(variance, jnp.float32)
  if variance == "fixed_small":
    return schedule.posterior_log_variance_clipped
  if variance == "fixed_large":
    return jnp.log(jnp.append(schedule.posterior_variance[1], schedule.betas[1:]))
  raise ValueError(f"variance must be one of {VARIANCES} or an array, not '{variance}'")


def resolve_variance(schedule: DiscreteSchedule, variance):
  """"learned", or the table of T fixed log-variances: what `p_mean_log_variance` takes, computed
  once before a loop over timesteps instead of inside every step."""
  if isinstance(variance, str) and variance == "learned":
    return variance
  return reverse_log_variance(schedule, variance)


def learned_log_variance(schedule: DiscreteSchedule, t: jax.Array, var_output: jax.Array):
  """Improved DDPM's learned range: frac log beta_t + (1 - frac) log betatilde_t, frac = (v+1)/2."""
  frac = 0.5 * (var_output + 1.0)
  return (frac * extract(schedule.log_betas, t, var_output.ndim)
          + (1.0 - frac) * extract(schedule.posterior_log_variance_clipped, t, var_output.ndim))


def p_mean_log_variance(schedule: DiscreteSchedule, pred: Prediction, x_t, t, *,
                        variance="fixed_small", clip_x0: bool = False):
  """Mean and log-variance of p(x_{t-1} | x_t): the posterior at the (optionally clipped) x0
  estimate, with a fixed or learned variance. Returns (mean, log_var, x0)."""
  x0 = jnp.clip(pred.x0, -1.0, 1.0) if clip_x0 else pred.x0
  mean = posterior_mean(schedule, x0, x_t, t)
  if isinstance(variance, str) and variance == "learned":
    if pred.var_output is None:
      raise ValueError("variance='learned' needs a model that outputs its variance")
    log_var = learned_log_variance(schedule, t, pred.var_output)
  else:
    log_var = jnp.broadcast_to(extract(reverse_log_variance(schedule, variance), t, x_t.ndim),
                               x_t.shape)
  return mean, log_var, x0
