"""Deterministic sampling run backwards, and interpolation between noises.

- `ddim_invert` (Song et al. 2021, section 4.3; Dhariwal & Nichol 2021, appendix): DDIM with eta = 0
  is an Euler discretisation of the probability-flow ODE, so run on the ascending grid it maps an
  image to the noise that DDIM on the same grid maps back to it (up to the discretisation error,
  small at 100+ steps). The image is taken as x at the grid's smallest non-zero level.
- `slerp`: spherical interpolation of Gaussian noises, which keeps their norm (a straight line
  between two Gaussian vectors passes through atypically small norms and gives washed-out images).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxgen.samplers.ancestral import ddim


def ddim_invert(denoise: Callable, sigmas, x, *, extra_args=None, trajectory: bool = False):
  """The noise (at scale sigmas[0]) from which DDIM(eta=0) on `sigmas` (descending, ending at 0)
  regenerates x: DDIM on the reversed grid without its final 0."""
  sigmas = jnp.asarray(sigmas, jnp.float32)
  ascending = sigmas[:-1][::-1] if sigmas.shape[0] > 2 else sigmas[:1][::-1]
  if ascending.shape[0] < 2:
    raise ValueError("DDIM inversion needs a grid of at least two non-zero levels")
  return ddim(denoise, ascending, x, None, eta=0.0, extra_args=extra_args, trajectory=trajectory)


def slerp(z0, z1, t):
  """Spherical interpolation per sample between noise batches z0 and z1 (t in [0, 1], traced)."""
  flat0 = z0.reshape(z0.shape[0], -1)
  flat1 = z1.reshape(z1.shape[0], -1)
  cos = jnp.sum(flat0 * flat1, -1) / (jnp.linalg.norm(flat0, axis=-1) * jnp.linalg.norm(flat1, axis=-1))
  omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None]
  sin = jnp.sin(omega)
  # Nearly parallel noises: the linear weights are the limit (and avoid 0 / 0).
  w0 = jnp.where(sin > 1e-6, jnp.sin((1.0 - t) * omega) / jnp.where(sin > 1e-6, sin, 1.0), 1.0 - t)
  w1 = jnp.where(sin > 1e-6, jnp.sin(t * omega) / jnp.where(sin > 1e-6, sin, 1.0), t)
  return (w0 * flat0 + w1 * flat1).reshape(z0.shape)
