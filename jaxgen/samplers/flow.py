"""Integrators of a flow's velocity field over t in [0, 1].

Convention (the library's, used by the rectified-flow method): x_t = t x_data + (1 - t) noise, so
t = 0 is noise, t = 1 is data and the velocity target is x_data - noise. A grid is an increasing
array of K + 1 times (`grids.flow_times`); `velocity(x, t, **extra)` takes t as a [B] array.
- Euler: x' = x + dt v(x, t). NFE = K.
- Heun (trapezoidal): x' = x + dt (v(x, t) + v(x + dt v, t')) / 2; a step to t' = 1 stays Euler when
  heun_final_euler (a denoiser turned velocity is undefined at t = 1). NFE = 2K (2K - 1).
- Midpoint: x' = x + dt v(x + dt v / 2, t + dt / 2). NFE = 2K.
`SamplerOutput.x0` holds the last estimate of x_data, x + (1 - t) v.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.samplers.core import scan_grid


def _v(velocity, x, t, extra):
  return velocity(x, jnp.broadcast_to(t, (x.shape[0],)), **extra)


def _integrate(method: str, velocity: Callable, ts, x_init, extra_args, trajectory: bool,
               heun_final_euler: bool = True):
  extra = extra_args or {}

  def step(x, t, t_next, i, k):
    dt = t_next - t
    v = _v(velocity, x, t, extra)
    estimate = x + (1.0 - t) * v
    if method == "euler":
      return x + dt * v, estimate
    if method == "midpoint":
      return x + dt * _v(velocity, x + 0.5 * dt * v, t + 0.5 * dt, extra), estimate
    x_euler = x + dt * v

    def correct(_):
      return x + 0.5 * dt * (v + _v(velocity, x_euler, t_next, extra))
    if not heun_final_euler:
      return correct(None), estimate
    return jax.lax.cond(t_next < 1.0, correct, lambda _: x_euler, None), estimate

  return scan_grid(step, x_init, lambda x: x, ts, None, trajectory)


def flow_euler(velocity: Callable, ts, x_init, key=None, *, extra_args=None, trajectory=False):
  del key
  return _integrate("euler", velocity, ts, x_init, extra_args, trajectory)


def flow_heun(velocity: Callable, ts, x_init, key=None, *, heun_final_euler: bool = True,
              extra_args=None, trajectory=False):
  del key
  return _integrate("heun", velocity, ts, x_init, extra_args, trajectory, heun_final_euler)


def flow_midpoint(velocity: Callable, ts, x_init, key=None, *, extra_args=None, trajectory=False):
  del key
  return _integrate("midpoint", velocity, ts, x_init, extra_args, trajectory)
