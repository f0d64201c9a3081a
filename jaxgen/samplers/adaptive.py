"""An adaptive-step ODE solver (Dormand & Prince 1980, RK5(4) with FSAL) under `lax.while_loop`.

For reference solutions of the probability-flow ODE (the sampler benchmark's truth) and for
likelihoods (the state may be any PyTree, e.g. (x, log-density)). Error control: a step is accepted
when the RMS over all elements of err / (atol + rtol max(|y|, |y'|)) is at most 1, and the next step
is h * clip(0.9 err^(-1/5), 0.2, 5). Integrates from t0 to t1 in either direction.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.samplers.core import call_x0

# The Butcher tableau of Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae".
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


class ODEResult(NamedTuple):
  y: object          # the state at t1 (a PyTree like y0)
  nfe: jax.Array     # function evaluations used
  steps: jax.Array   # accepted steps
  rejected: jax.Array
  success: jax.Array  # False when max_steps ran out before t1


def _axpy(y, coeffs, ks, h):
  """y + h sum_j coeffs_j k_j over PyTrees (zero coefficients skipped)."""
  def combine(y_leaf, *k_leaves):
    acc = y_leaf
    for c, k in zip(coeffs, k_leaves):
      if c != 0.0:
        acc = acc + (h * c) * k
    return acc
  return jax.tree.map(combine, y, *ks)


def solve_ode(f: Callable, y0, t0: float, t1: float, *, rtol: float = 1e-5, atol: float = 1e-5,
              first_step: float | None = None, max_steps: int = 10000) -> ODEResult:
  """y(t1) for dy/dt = f(y, t), y(t0) = y0, with Dormand-Prince 5(4)."""
  dtype = jnp.result_type(*jax.tree.leaves(y0))  # time in the state's precision (f64 under x64)
  t0 = jnp.asarray(t0, dtype)
  t1 = jnp.asarray(t1, dtype)
  direction = jnp.sign(t1 - t0)
  h0 = jnp.abs(t1 - t0) * 0.01 if first_step is None else jnp.asarray(first_step, dtype)

  def error_norm(err, y, y_new):
    total, count = 0.0, 0
    for e, a, b in zip(jax.tree.leaves(err), jax.tree.leaves(y), jax.tree.leaves(y_new)):
      scale = atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))
      total = total + jnp.sum(jnp.square(e / scale))
      count += e.size
    return jnp.sqrt(total / count)

  def attempt(state):
    t, y, k1, h, nfe, steps, rejected = state
    h = jnp.minimum(h, jnp.abs(t1 - t))
    hs = direction * h
    ks = [k1]
    for stage in range(1, 7):
      y_stage = _axpy(y, _A[stage], ks, hs)
      ks.append(f(y_stage, t + _C[stage] * hs))
    y_new = _axpy(y, _B5, ks, hs)
    y_low = _axpy(y, _B4, ks, hs)
    err = jax.tree.map(lambda a, b: a - b, y_new, y_low)
    norm = error_norm(err, y, y_new)
    accept = norm <= 1.0
    factor = jnp.clip(0.9 * jnp.power(jnp.maximum(norm, 1e-10), -0.2), 0.2, 5.0)
    pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
    return (jnp.where(accept, t + hs, t), pick(y_new, y), pick(ks[6], k1), h * factor, nfe + 6,
            steps + accept.astype(jnp.int32), rejected + (1 - accept.astype(jnp.int32)))

  def not_done(state):
    t, _, _, h, _, steps, rejected = state
    return (jnp.abs(t1 - t) > 1e-7 * jnp.maximum(1.0, jnp.abs(t1))) & (steps + rejected < max_steps)

  k1 = f(y0, t0)
  zero = jnp.zeros((), jnp.int32)
  t, y, _, _, nfe, steps, rejected = jax.lax.while_loop(
      not_done, attempt, (t0, y0, k1, h0, zero + 1, zero, zero))
  return ODEResult(y, nfe, steps, rejected, jnp.abs(t1 - t) <= 1e-7 * jnp.maximum(1.0, jnp.abs(t1)))


def probability_flow(denoise: Callable, x, sigma_start: float, sigma_end: float, *,
                     rtol: float = 1e-6, atol: float = 1e-6, extra_args=None, max_steps: int = 10000):
  """The exact (to tolerance) probability-flow ODE map from sigma_start to sigma_end > 0, solved in
  u = log sigma where it is smooth: dx/du = sigma dx/dsigma = x - D(x, sigma). Returns ODEResult."""
  extra = extra_args or {}

  def f(y, u):
    return y - call_x0(denoise, y, jnp.exp(u), extra)

  return solve_ode(f, x, jnp.log(sigma_start), jnp.log(sigma_end), rtol=rtol, atol=atol,
                   max_steps=max_steps)
