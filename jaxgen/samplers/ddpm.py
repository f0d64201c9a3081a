"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as one `lax.scan` over the timesteps."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule


def ddpm_ancestral(denoise: Callable, schedule: DiscreteSchedule, noise: jax.Array, key: jax.Array,
                   *, variance="fixed_small", clip_x0: bool = True, trajectory_every: int = 0):
  """Runs x_T = noise down to x_0 through every timestep of `schedule`.

  denoise(x_t, t) -> ddpm.Prediction, t the [B] indices into `schedule` (`ddpm.from_eps` adapts an
  eps function). For a respaced schedule (`schedules.respace_betas`) the denoiser maps indices to
  the network's own timesteps. variance: "fixed_small" (posterior betatilde_t), "fixed_large"
  (beta_t, with betatilde_1 at the first step, as in the reference) or "learned" (the model's
  interpolation). clip_x0 clips the implied x0 to [-1, 1] before forming the posterior mean. The
  noise of step t comes from fold_in(key, t), so a sample depends only on (noise, key). Returns
  x_0, and with trajectory_every=k > 0 also the stack of x_t after every k-th step (T/k frames,
  noise first). NFE = T.
  """
  variance = ddpm.resolve_variance(schedule, variance)

  def step(x, t):
    t_batch = jnp.full((x.shape[0],), t, jnp.int32)
    mean, log_var, _ = ddpm.p_mean_log_variance(schedule, denoise(x, t_batch), x, t_batch,
                                                variance=variance, clip_x0=clip_x0)
    z = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
    nonzero = (t > 0).astype(x.dtype)  # no noise on the last step
    x = mean + nonzero * jnp.exp(0.5 * log_var) * z
    return x, (x if trajectory_every else None)

  x, frames = jax.lax.scan(step, noise, jnp.arange(schedule.num_timesteps - 1, -1, -1))
  if trajectory_every:
    return x, jnp.concatenate([noise[None], frames[trajectory_every - 1::trajectory_every]])
  return x
