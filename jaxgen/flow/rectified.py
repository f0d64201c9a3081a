"""Rectified flow (Liu et al. 2022) and flow matching (Lipman et al. 2022): the objective.

Convention, everywhere in the library: x_t = t x_data + (1 - t) noise, t in [0, 1], t = 0 pure
noise, t = 1 data; the velocity target is x_data - noise. (Stable Diffusion 3 writes the same path
with t_SD3 = 1 - t; its logit-normal and mode time densities are stated in its own t below and
mapped.)

Time sampling for training:
- uniform: t ~ U(0, 1) (rectified flow);
- logit_normal: t_SD3 = sigmoid(m + s n), n ~ N(0, 1) (Esser et al. 2024, eq. 19; m > 0 puts
  more weight on noisy times);
- mode: t_SD3 = 1 - u - c (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1) (eq. 20; c in [-1, 2/(pi-2)],
  c > 0 favours the middle);
- discrete: t uniform on {0, 1/k, ..., (k-1)/k}: k-step distillation (Liu et al. 2022, sec. 2.3),
  trained on a fixed coupling, which makes k Euler steps on that grid reproduce it.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

TIME_SAMPLINGS = ("uniform", "logit_normal", "mode", "discrete")


def _bcast(t, x):
  return jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1))


def interpolate(noise: jax.Array, data: jax.Array, t: jax.Array) -> jax.Array:
  """x_t = t x_data + (1 - t) noise for per-example times t [B]."""
  t = _bcast(t, data)
  return t * data + (1.0 - t) * noise


def velocity_target(noise: jax.Array, data: jax.Array) -> jax.Array:
  """d x_t / dt along the straight path: x_data - noise."""
  return data - noise


def sample_times(key: jax.Array, n: int, kind: str = "uniform", *, logit_mean: float = 0.0,
                 logit_std: float = 1.0, mode_scale: float = 1.29, steps: int = 1) -> jax.Array:
  """n training times in [0, 1] (our t: 1 = data) drawn from the named density."""
  if kind == "uniform":
    return jax.random.uniform(key, (n,))
  if kind == "logit_normal":
    t_sd3 = jax.nn.sigmoid(logit_mean + logit_std * jax.random.normal(key, (n,)))
    return 1.0 - t_sd3
  if kind == "mode":
    u = jax.random.uniform(key, (n,))
    t_sd3 = 1.0 - u - mode_scale * (jnp.square(jnp.cos(0.5 * math.pi * u)) - 1.0 + u)
    return 1.0 - t_sd3
  if kind == "discrete":
    return jax.random.randint(key, (n,), 0, steps).astype(jnp.float32) / steps
  raise ValueError(f"unknown time sampling '{kind}'; choose one of {', '.join(TIME_SAMPLINGS)}")


def flow_matching_loss(apply: Callable, data: jax.Array, key: jax.Array, *, noise=None,
                       time_sampling: str = "uniform", **time_options):
  """E_t E ||v(x_t, t) - (x_data - noise)||^2 (mean over dimensions), and its parts.

  apply(x_t, t, key) -> velocity, with t a [B] array and key for dropout. `noise` given: a fixed
  coupling (reflow, distillation), otherwise independent N(0, I) draws of the global batch's shape.
  """
  t_key, noise_key, model_key = jax.random.split(key, 3)
  if noise is None:
    noise = jax.random.normal(noise_key, data.shape, data.dtype)
  t = sample_times(t_key, data.shape[0], time_sampling, **time_options)
  x_t = interpolate(noise, data, t)
  v = apply(x_t, t, model_key)
  axes = tuple(range(1, data.ndim))
  per_example = jnp.mean(jnp.square(v - velocity_target(noise, data)), axis=axes)
  return jnp.mean(per_example), {"t_mean": jnp.mean(t)}


def straightness(velocity: Callable, noise: jax.Array, ts, *, extra_args=None):
  """(x at ts[-1], S per example): Euler along the flow from `noise` at ts[0] to ts[-1], and the
  straightness S = int ||(Z_1 - Z_0) - v(Z_t, t)||^2 dt / (ts[-1] - ts[0]) per dimension
  (Liu et al. 2022, Definition 3.5; 0 exactly when every path is a straight line at constant speed).

  Since int v dt = Z_1 - Z_0 =: D along the path, S = int ||v||^2 dt / T - ||D||^2 / T^2 (T the
  time span), accumulated in the scan carry without storing the trajectory; exact for the Euler
  path itself."""
  extra = extra_args or {}
  ts = jnp.asarray(ts, jnp.float32)
  axes = tuple(range(1, noise.ndim))

  def step(carry, t_pair):
    x, energy = carry
    t, t_next = t_pair
    v = velocity(x, jnp.broadcast_to(t, (x.shape[0],)), **extra)
    dt = t_next - t
    return (x + dt * v, energy + dt * jnp.mean(jnp.square(v), axis=axes)), None

  (x, energy), _ = jax.lax.scan(step, (noise, jnp.zeros(noise.shape[0], jnp.float32)),
                                (ts[:-1], ts[1:]))
  span = ts[-1] - ts[0]
  displacement = jnp.mean(jnp.square(x - noise), axis=axes)
  return x, energy / span - displacement / jnp.square(span)
