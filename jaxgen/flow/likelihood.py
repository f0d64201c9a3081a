"""The exact log-likelihood of a flow by the instantaneous change of variables (Chen et al. 2018):
d log p_t(x_t) / dt = -div v(x_t, t). Integrating data (t = 1) back to noise (t = 0) with the
adaptive solver gives log p_1(x) = log N(x_0; 0, I) - int_0^1 div v dt.

The divergence is exact (trace of the Jacobian, d forward-mode passes) for low-dimensional data,
or Hutchinson's unbiased estimate eps^T (dv/dx) eps with one fixed probe eps per example for the
whole path (Grathwohl et al. 2019), one Jacobian-vector product per evaluation.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxgen.samplers.adaptive import solve_ode

DIVERGENCES = ("exact", "rademacher", "gaussian")


class FlowLikelihood(NamedTuple):
  log_prob: jax.Array    # [B] log p_1(x) in nats (density of the model's data space)
  noise: jax.Array       # the x_0 the data maps to
  prior_log_prob: jax.Array
  nfe: jax.Array


def log_likelihood(velocity: Callable, x: jax.Array, key: jax.Array | None = None, *,
                   divergence: str = "rademacher", extra_args=None, rtol: float = 1e-5,
                   atol: float = 1e-5, max_steps: int = 4000) -> FlowLikelihood:
  """log p(x) per example under the flow's ODE, all under jit (a `lax.while_loop` solver)."""
  extra = extra_args or {}
  batch = x.shape[0]
  axes = tuple(range(1, x.ndim))
  dim = math.prod(x.shape[1:])
  if divergence not in DIVERGENCES:
    raise ValueError(f"unknown divergence '{divergence}'; choose one of {', '.join(DIVERGENCES)}")
  if divergence != "exact":
    if key is None:
      raise ValueError("the Hutchinson divergence estimate needs a key")
    probe = (jax.random.rademacher(key, x.shape, jnp.float32) if divergence == "rademacher"
             else jax.random.normal(key, x.shape, jnp.float32))

  def v_at(y, t):
    return velocity(y, jnp.broadcast_to(t, (batch,)).astype(jnp.float32), **extra)

  def field(state, t):
    y, _ = state
    if divergence == "exact":
      flat = y.reshape(batch, dim)
      # Examples are independent: sum over the batch of column i of each example's Jacobian.
      def column(i):
        e = jnp.zeros_like(flat).at[:, i].set(1.0).reshape(y.shape)
        return jax.jvp(lambda z: v_at(z, t), (y,), (e,))[1].reshape(batch, dim)[:, i]
      v = v_at(y, t)
      div = sum(column(i) for i in range(dim))
    else:
      v, jv = jax.jvp(lambda z: v_at(z, t), (y,), (probe,))
      div = jnp.sum(jv * probe, axis=axes)
    return v, div

  out = solve_ode(field, (x, jnp.zeros(batch, jnp.float32)), 1.0, 0.0, rtol=rtol, atol=atol,
                  max_steps=max_steps)
  noise, div_integral = out.y  # div_integral = int_1^0 div v dt = -int_0^1 div v dt
  prior = -0.5 * jnp.sum(jnp.square(noise), axis=axes) - 0.5 * dim * math.log(2 * math.pi)
  return FlowLikelihood(prior + div_integral, noise, prior, out.nfe)


def bits_per_dim(log_prob: jax.Array, dim: int, *, quantization_scale: float = 0.0) -> jax.Array:
  """-log p / (dim ln 2). quantization_scale s > 0: the data were integers k scaled as x = k / s - 1
  and uniformly dequantised (x + u / s, u ~ U[0, 1)), so the density of k + u, whose negative log
  bounds the discrete -log P(k) in expectation, is p / s^dim (8-bit images: s = 127.5)."""
  nats = -log_prob
  if quantization_scale:
    nats = nats + dim * math.log(quantization_scale)
  return nats / (dim * math.log(2.0))
