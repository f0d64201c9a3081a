"""DDPM's forward process and training objective (Ho et al. 2020, Algorithm 1)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion.schedules import DiscreteSchedule, extract


def q_sample(schedule: DiscreteSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """The closed-form jump x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
  return (extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
          + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise)


def predict_x0_from_eps(schedule: DiscreteSchedule, x_t, t, eps):
  return (extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t
          - extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.ndim) * eps)


def posterior_mean(schedule: DiscreteSchedule, x0, x_t, t):
  return (extract(schedule.posterior_mean_coef_x0, t, x_t.ndim) * x0
          + extract(schedule.posterior_mean_coef_xt, t, x_t.ndim) * x_t)


def reverse_log_variance(schedule: DiscreteSchedule, variance) -> jax.Array:
  """log of the reverse-process variance per timestep: Ho et al.'s fixed choices by name, or a
  given array of T log-variances."""
  if not isinstance(variance, str):
    return jnp.asarray(variance, jnp.float32)
  if variance == "fixed_small":
    return schedule.posterior_log_variance_clipped
  if variance == "fixed_large":
    return jnp.log(jnp.append(schedule.posterior_variance[1], schedule.betas[1:]))
  raise ValueError(f"variance must be fixed_small or fixed_large, not '{variance}'")


def eps_mse_loss(eps_fn: Callable, schedule: DiscreteSchedule, x0: jax.Array, key: jax.Array):
  """L_simple: E_{t, eps} ||eps - eps_theta(x_t, t)||^2, averaged over pixels and the batch.

  `eps_fn(x_t, t, key)` is the network; `t` is drawn uniformly from [0, T). All draws have the global
  batch shape, so they do not depend on how the batch is sharded across devices.
  """
  t_key, noise_key, model_key = jax.random.split(key, 3)
  t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = q_sample(schedule, x0, t, noise)
  eps = eps_fn(x_t, t, model_key)
  per_example = jnp.mean(jnp.square(eps - noise), axis=tuple(range(1, x0.ndim)))
  return jnp.mean(per_example), {}
