"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as one `lax.scan` over the timesteps."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule, extract


def ddpm_ancestral(eps_fn: Callable, schedule: DiscreteSchedule, noise: jax.Array, key: jax.Array,
                   *, variance: str = "fixed_small", clip_x0: bool = True,
                   trajectory_every: int = 0):
  """Runs x_T = noise down to x_0.

  eps_fn(x_t, t) -> predicted noise. variance: "fixed_small" (posterior betatilde_t) or
  "fixed_large" (beta_t, with betatilde_1 at the first step, as in the reference). clip_x0 clips the
  implied x0 to [-1, 1] before forming the posterior mean. The noise of step t comes from
  fold_in(key, t), so a sample depends only on (noise, key). Returns x_0, and with
  trajectory_every=k > 0 also the stack of x_t after every k-th step (T/k frames, noise first).
  NFE = T.
  """
  T = schedule.num_timesteps
  log_var = ddpm.reverse_log_variance(schedule, variance)

  def step(x, t):
    t_batch = jnp.full((x.shape[0],), t, jnp.int32)
    eps = eps_fn(x, t_batch)
    x0 = ddpm.predict_x0_from_eps(schedule, x, t_batch, eps)
    if clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
    mean = ddpm.posterior_mean(schedule, x0, x, t_batch)
    z = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
    nonzero = (t > 0).astype(x.dtype)  # no noise on the last step
    x = mean + nonzero * jnp.exp(0.5 * extract(log_var, t_batch, x.ndim)) * z
    return x, (x if trajectory_every else None)

  x, frames = jax.lax.scan(step, noise, jnp.arange(T - 1, -1, -1))
  if trajectory_every:
    return x, jnp.concatenate([noise[None], frames[trajectory_every - 1::trajectory_every]])
  return x
