"""Euler and Heun on the probability-flow ODE with EDM's stochastic churn (Karras et al. 2022,
Algorithm 2).

Step i from sigma to sigma': gamma = min(S_churn / K, sqrt(2) - 1) when S_tmin <= sigma <= S_tmax,
else 0; sigma_hat = sigma (1 + gamma); x_hat = x + sqrt(sigma_hat^2 - sigma^2) S_noise z;
d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat; x' = x_hat + (sigma' - sigma_hat) d. Heun then
corrects with d' at (x', sigma'): x' = x_hat + (sigma' - sigma_hat)(d + d') / 2, except on a step
to sigma' = 0 (where d' is undefined), which stays Euler. S_churn = 0 (the default) is the
deterministic sampler. All four churn values are traced: sweeping them never recompiles.
NFE: Euler K; Heun 2K - 1 on a grid ending at 0 (2K otherwise).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.samplers.core import call_x0, gaussian_like, require_key, scan_grid, to_d


def _is_zero(value) -> bool:
  return isinstance(value, (int, float)) and value == 0


def _euler_or_heun(name: str, heun: bool, denoise, sigmas, noise, key, s_churn, s_tmin, s_tmax,
                   s_noise, extra_args, trajectory):
  require_key(key, name, not _is_zero(s_churn))
  num_steps = jnp.asarray(sigmas).shape[0] - 1

  def step(x, sigma, sigma_next, i, k):
    in_range = (sigma >= s_tmin) & (sigma <= s_tmax)
    gamma = jnp.where(in_range, jnp.minimum(s_churn / num_steps, jnp.sqrt(2.0) - 1.0), 0.0)
    sigma_hat = sigma * (1.0 + gamma)
    if key is not None:
      x = x + jnp.sqrt(jnp.square(sigma_hat) - jnp.square(sigma)) * s_noise * gaussian_like(k, x)
    x0 = call_x0(denoise, x, sigma_hat, extra_args)
    d = to_d(x, x0, sigma_hat)
    x_next = x + (sigma_next - sigma_hat) * d
    if not heun:
      return x_next, x0

    def correct(_):
      x0_next = call_x0(denoise, x_next, sigma_next, extra_args)
      return x + (sigma_next - sigma_hat) * 0.5 * (d + to_d(x_next, x0_next, sigma_next))

    return jax.lax.cond(sigma_next > 0, correct, lambda _: x_next, None), x0

  return scan_grid(step, noise, lambda x: x, sigmas, key, trajectory)


def euler(denoise: Callable, sigmas, noise, key=None, *, s_churn=0.0, s_tmin=0.0,
          s_tmax=float("inf"), s_noise=1.0, extra_args=None, trajectory: bool = False):
  return _euler_or_heun("euler", False, denoise, sigmas, noise, key, s_churn, s_tmin, s_tmax,
                        s_noise, extra_args, trajectory)


def heun(denoise: Callable, sigmas, noise, key=None, *, s_churn=0.0, s_tmin=0.0,
         s_tmax=float("inf"), s_noise=1.0, extra_args=None, trajectory: bool = False):
  return _euler_or_heun("heun", True, denoise, sigmas, noise, key, s_churn, s_tmin, s_tmax,
                        s_noise, extra_args, trajectory)
