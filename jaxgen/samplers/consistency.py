"""Multistep consistency sampling (Song et al. 2023, Algorithm 1).

With a consistency function f as the denoiser and a grid [tau_0 = sigma_max, tau_1, ..., 0]:
x0 = f(sigma_max z, sigma_max); then for each later level tau_j > 0, x = x0 + sqrt(tau_j^2 -
sigma_min^2) z_j and x0 = f(x, tau_j). One model evaluation per level: the grid [sigma_max, 0] is
one-step generation. (On an ordinary denoiser this is a restart-style sampler that re-noises its
x0 estimate at each level.)
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxgen.samplers.core import call_x0, gaussian_like, require_key, scan_grid


def consistency(denoise: Callable, sigmas, noise, key=None, *, sigma_min: float = 0.0,
                extra_args=None, trajectory: bool = False):
  sigmas = jnp.asarray(sigmas, jnp.float32)
  require_key(key, "consistency", sigmas.shape[0] > 2)  # one step draws nothing

  def step(x, sigma, sigma_next, i, k):
    x0 = call_x0(denoise, x, sigma, extra_args)
    renoise = jnp.sqrt(jnp.maximum(jnp.square(sigma_next) - sigma_min ** 2, 0.0))
    return jnp.where(sigma_next > 0, x0 + renoise * gaussian_like(k, x0), x0), x0

  return scan_grid(step, noise, lambda x: x, sigmas, key, trajectory)
