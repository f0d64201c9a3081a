"""What every sampler shares: the model protocol, the output, and the scan over a noise grid.

The coordinates (Karras et al. 2022, section 2; the view k-diffusion samples in). Every sampler
integrates in the variance-exploding scaling x = x_t / alpha_t = x_0 + sigma eps, where sigma is the
noise-to-signal ratio sigma_t / alpha_t of the model's own process (for a VP model
sigma = sqrt((1 - abar) / abar)). The probability-flow ODE is then dx/dsigma = (x - D(x, sigma)) /
sigma with the denoiser D(x, sigma) = E[x_0 | x]. A VP model's samplers (DDPM, DDIM, DPM-Solver)
give the same iterates in these coordinates as in their own, because their update rules depend on
the noise level only through lambda = log(alpha / sigma) = -log(sigma_ve); `adapters` turn eps, x0,
v, EDM and velocity networks into D.

The model protocol: `denoise(x, sigma, **extra_args)` with x [B, ...] and sigma a scalar array
(or per example, shaped [B, 1, ...] to broadcast against x: see `per_example`), returning the estimate of x_0, either as an array or as a `ddpm.Prediction` (whose `var_output`
carries improved DDPM's learned variance to the DDPM sampler).

A time grid is a 1-D array of K + 1 noise levels, decreasing, usually ending at 0 (`grids`). It is a
traced argument: grids of one length share one compilation. A grid that ends above 0 stops early;
the output then holds the partially denoised x and its x_0 estimate.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.diffusion.ddpm import Prediction


class SamplerOutput(NamedTuple):
  x: jax.Array                  # the sample at the grid's last noise level (x_0 when it ends at 0)
  x0: jax.Array                 # the last denoiser estimate of x_0 (what early stopping returns)
  trajectory: jax.Array | None  # [K + 1, B, ...] x at every grid point, the noise first
  x0_trajectory: jax.Array | None  # [K, B, ...] the denoiser's x_0 estimate at every step


def split_output(out) -> tuple[jax.Array, jax.Array | None]:
  """(x0, learned-variance output or None) of whatever a denoiser returned."""
  if isinstance(out, Prediction):
    return out.x0, out.var_output
  return out, None


def call_x0(denoise: Callable, x, sigma, extra_args: dict | None) -> jax.Array:
  return split_output(denoise(x, sigma, **(extra_args or {})))[0]


def per_example(value, batch: int) -> jax.Array:
  """A noise level or time given as a scalar or per example ([B] or broadcastable [B, 1, ...]) as
  a [B] array: denoisers accept either, so a distillation loss can call a teacher at a different
  sigma for every example."""
  value = jnp.asarray(value)
  return jnp.broadcast_to(value.reshape(-1) if value.ndim else value, (batch,))


def to_d(x, x0, sigma):
  """The probability-flow ODE's derivative dx/dsigma = (x - D) / sigma."""
  return (x - x0) / sigma


def scan_grid(step: Callable, init: Any, x_of: Callable, sigmas: jax.Array, key: jax.Array | None,
              trajectory: bool) -> SamplerOutput:
  """Runs step(carry, sigma, sigma_next, i, key_i) -> (carry, x0) over the K intervals of `sigmas`
  as one `lax.scan`. key_i = fold_in(key, i), so step i's noise does not depend on the grid length
  or on how many draws other steps make. x_of(carry) is the current x. Only the last x_0 estimate
  rides in the carry; the per-step stacks exist only with trajectory=True."""
  sigmas = jnp.asarray(sigmas)
  sigmas = sigmas.astype(jnp.result_type(sigmas.dtype, jnp.float32))  # f64 stays f64 under x64
  num_steps = sigmas.shape[0] - 1
  if sigmas.ndim != 1 or num_steps < 1:
    raise ValueError("a time grid is a 1-D array of at least two noise levels (one step)")
  base = key if key is not None else jax.random.key(0)

  def body(carry, inputs):
    inner, _ = carry
    sigma, sigma_next, i = inputs
    inner, x0 = step(inner, sigma, sigma_next, i, jax.random.fold_in(base, i))
    return (inner, x0), ((x_of(inner), x0) if trajectory else None)

  x_init = x_of(init)
  (carry, last_x0), frames = jax.lax.scan(body, (init, jnp.zeros_like(x_init)),
                                          (sigmas[:-1], sigmas[1:], jnp.arange(num_steps)))
  if not trajectory:
    return SamplerOutput(x_of(carry), last_x0, None, None)
  return SamplerOutput(x_of(carry), last_x0, jnp.concatenate([x_init[None], frames[0]]), frames[1])


def require_key(key, name: str, stochastic: bool):
  if stochastic and key is None:
    raise ValueError(f"sampler '{name}' draws noise at every step: pass a PRNG key")


def gaussian_like(key, x):
  return jax.random.normal(key, x.shape, x.dtype)
