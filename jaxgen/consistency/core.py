"""Consistency models (Song et al. 2023; improved recipe: Song & Dhariwal 2023): the
parameterisation, the discretisation of noise levels, and the training objective.

Coordinates are the samplers' (`jaxgen.samplers.core`): x = x_0 + sigma z. The consistency function
f(x, sigma) maps any point of a probability-flow trajectory to its origin; it is parameterised as

  f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
  c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
  c_out = sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2),
  c_in = 1 / sqrt(sigma_data^2 + sigma^2),  c_noise = time_scale * ln(sigma)  (CM: 1000 / 4),

so f(x, sigma_min) = x exactly (c_skip = 1, c_out = 0): the boundary condition holds for any F.

Noise levels: N levels in Karras et al.'s rho spacing, ascending, sigma_1 = sigma_min, sigma_N =
sigma_max (`level`, valid for a traced N). The objective (CM eq. 7 / 10, iCT sec. 3-5) draws a pair
(sigma_i, sigma_{i+1}), x_{i+1} = x_0 + sigma_{i+1} z, and compares f_theta(x_{i+1}, sigma_{i+1}) with
the target network's f at the adjacent point x_i:
- distillation: x_i = one ODE step (Euler or Heun) of a teacher denoiser from sigma_{i+1} to sigma_i;
- training: x_i = x_0 + sigma_i z (the same z: the one-sample estimate of the score).
Distances: squared L2 (mean over dimensions), L1, or pseudo-Huber sqrt(||a - b||^2 + c^2) - c
(c = 0.00054 sqrt(d) in iCT). Weightings: uniform, or 1 / (sigma_{i+1} - sigma_i) (iCT). Pair
sampling: uniform over i, or iCT's discretised lognormal p(i) ~ erf((ln sigma_{i+1} - P_mean) /
(sqrt 2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt 2 P_std)). Curriculum (iCT eq. 8):
N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from jaxgen.samplers.core import per_example

DISTANCES = ("l2", "l1", "pseudo_huber")
WEIGHTINGS = ("uniform", "ict")
LEVEL_SAMPLINGS = ("uniform", "lognormal")
SOLVERS = ("euler", "heun")


def scalings(sigma, sigma_min: float, sigma_data: float):
  """(c_skip, c_out, c_in) of the consistency parameterisation at sigma."""
  c_skip = sigma_data ** 2 / (jnp.square(sigma - sigma_min) + sigma_data ** 2)
  c_out = sigma_data * (sigma - sigma_min) * jax.lax.rsqrt(sigma_data ** 2 + jnp.square(sigma))
  c_in = jax.lax.rsqrt(sigma_data ** 2 + jnp.square(sigma))
  return c_skip, c_out, c_in


def consistency_function(network: Callable, x, sigma, *, sigma_min: float, sigma_data: float,
                         time_scale: float = 250.0):
  """f(x, sigma) of `network(net_x, net_t) -> F` for per-example sigma [B] (or a scalar)."""
  sigma = per_example(jnp.asarray(sigma, jnp.float32), x.shape[0])
  s = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
  c_skip, c_out, c_in = scalings(s, sigma_min, sigma_data)
  return c_skip * x + c_out * network(c_in * x, time_scale * jnp.log(sigma))


def level(i, n, sigma_min: float, sigma_max: float, rho: float = 7.0):
  """sigma_i (0-based, ascending) of n rho-spaced levels; i and n may be traced."""
  frac = jnp.asarray(i, jnp.float32) / (jnp.asarray(n, jnp.float32) - 1.0)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (lo + frac * (hi - lo)) ** rho


def ict_num_levels(step, total_steps: int, s0: int = 10, s1: int = 1280):
  """iCT's discretisation curriculum N(k) (eq. 8), for a traced step k."""
  stages = math.floor(math.log2(max(1, s1 // s0))) + 1
  per_stage = max(1, total_steps // stages)
  doublings = jnp.asarray(step, jnp.int32) // per_stage
  return jnp.minimum(s0 * jnp.power(2, jnp.minimum(doublings, 30)), s1) + 1


def sample_pairs(key, batch: int, num_levels, max_levels: int, *, sampling: str = "uniform",
                 sigma_min: float, sigma_max: float, rho: float, p_mean: float = -1.1,
                 p_std: float = 2.0):
  """Pair indices i in [0, N - 2] (N = num_levels, traced, at most max_levels)."""
  if sampling == "uniform":
    return jax.random.randint(key, (batch,), 0, num_levels - 1)
  if sampling != "lognormal":
    raise ValueError(f"unknown level sampling '{sampling}'; choose one of {', '.join(LEVEL_SAMPLINGS)}")
  i = jnp.arange(max_levels - 1)
  cdf = lambda s: erf((jnp.log(s) - p_mean) / (math.sqrt(2.0) * p_std))
  mass = cdf(level(i + 1, num_levels, sigma_min, sigma_max, rho)) - cdf(
      level(i, num_levels, sigma_min, sigma_max, rho))
  logits = jnp.where(i < num_levels - 1, jnp.log(jnp.maximum(mass, 1e-30)), -jnp.inf)
  return jax.random.categorical(key, logits, shape=(batch,))


def distance(a, b, kind: str, huber_c: float = 0.0):
  """Per-example distance between batches a and b."""
  axes = tuple(range(1, a.ndim))
  if kind == "l2":
    return jnp.mean(jnp.square(a - b), axis=axes)
  if kind == "l1":
    return jnp.mean(jnp.abs(a - b), axis=axes)
  if kind == "pseudo_huber":
    return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=axes) + huber_c ** 2) - huber_c
  raise ValueError(f"unknown distance '{kind}'; choose one of {', '.join(DISTANCES)}")


def ode_step(denoise: Callable, x, sigma, sigma_next, solver: str = "heun"):
  """One probability-flow step of a teacher D from sigma to sigma_next (both > 0, per example
  [B, 1, ...]): Euler, or Heun (EDM Algorithm 1's deterministic step)."""
  d = (x - denoise(x, sigma)) / sigma
  x_euler = x + (sigma_next - sigma) * d
  if solver == "euler":
    return x_euler
  d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
  return x + (sigma_next - sigma) * 0.5 * (d + d_next)


def consistency_loss(f_online: Callable, f_target: Callable, x0, key, *, num_levels,
                     max_levels: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                     teacher: Callable | None = None, solver: str = "heun",
                     distance_kind: str = "l2", huber_c: float = 0.0, weighting: str = "uniform",
                     level_sampling: str = "uniform", p_mean: float = -1.1, p_std: float = 2.0):
  """The batch-mean consistency loss and its parts. f_online(x, sigma, key) and f_target(x, sigma,
  key) take per-example sigma [B] and a dropout key (the same for both, as in the CM code);
  teacher(x, sigma) is a denoiser taking per-example sigma [B, 1, ...] (None: consistency
  training)."""
  pair_key, noise_key, model_key = jax.random.split(key, 3)
  batch = x0.shape[0]
  i = sample_pairs(pair_key, batch, num_levels, max_levels, sampling=level_sampling,
                   sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, p_mean=p_mean, p_std=p_std)
  sigma_lo = level(i, num_levels, sigma_min, sigma_max, rho)
  sigma_hi = level(i + 1, num_levels, sigma_min, sigma_max, rho)
  bcast = lambda s: s.reshape((-1,) + (1,) * (x0.ndim - 1))
  z = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_hi = x0 + bcast(sigma_hi) * z
  if teacher is None:
    x_lo = x0 + bcast(sigma_lo) * z
  else:
    x_lo = ode_step(teacher, x_hi, bcast(sigma_hi), bcast(sigma_lo), solver)
  x_lo = jax.lax.stop_gradient(x_lo)
  pred = f_online(x_hi, sigma_hi, model_key)
  target = jax.lax.stop_gradient(f_target(x_lo, sigma_lo, model_key))
  weight = 1.0 / (sigma_hi - sigma_lo) if weighting == "ict" else jnp.ones_like(sigma_hi)
  dist = distance(pred, target, distance_kind, huber_c)
  return jnp.mean(weight * dist), {"distance": jnp.mean(dist), "sigma_mean": jnp.mean(sigma_hi),
                                   "num_levels": jnp.asarray(num_levels, jnp.float32)}
