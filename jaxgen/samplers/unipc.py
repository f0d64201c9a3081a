"""UniPC (Zhao et al. 2023): a multistep predictor (UniP-p) and corrector (UniC-p), data prediction,
in the coordinates of `core` (lambda = -log sigma), with either of the paper's two choices of B(h):
"bh2", B(h) = e^h - 1 (the default), or "bh1", B(h) = h. For data prediction the paper's h is -h,
so the factor multiplying the fixed a = 1/2 below is 1 - e^{-h} (bh2) or h (bh1).

Both integrate a polynomial through model outputs against the kernel e^{-(h - tau)} of the exact
solution x' = e^{-h} x + int_0^h e^{-(h - tau)} D(lambda + tau) dtau. With p nodes the paper's
coefficients a_p = R_p^{-1} g_p / B(h) make the quadrature exact for polynomials of degree < p, which
is the exact integral of the interpolating polynomial; B(h) then cancels. It matters only in the
paper's two fixed choices a = 1/2: the order-2 predictor, x' = e^{-h} x + (1 - e^{-h}) D_s
+ B (D_s - D_{s-1}) / (2 r) (with bh2 this is DPM-Solver++(2M)), and the order-1 corrector,
x' = e^{-h} x + (1 - e^{-h}) D_s + B (D_t - D_s) / 2. Both B agree to first order in h, so the orders
are the same; they differ in the error constant.

Each step: evaluate D at the predicted point x~_i (one NFE), correct x_i with it (UniC, which raises
the order by one at no extra evaluation), then predict x~_{i+1} from the corrected x_i using D(x~_i)
as the current model output. The last step is not corrected (that would cost an evaluation at the
end); a step to sigma = 0 predicts x = D. NFE = K.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.samplers.core import call_x0, scan_grid
from jaxgen.samplers.dpm_solver import kernel_moments, multistep_orders


class UniPCState(NamedTuple):
  x: jax.Array          # the predicted x~_i at the current grid point
  x_start: jax.Array    # the corrected x_{i-1} the last prediction started from
  d1: jax.Array         # D at the previous two grid points (D_{i-1}, D_{i-2}, D_{i-3})
  d2: jax.Array
  d3: jax.Array
  h1: jax.Array         # the last three step sizes in lambda (h_{i-1}, h_{i-2}, h_{i-3})
  h2: jax.Array
  h3: jax.Array
  order: jax.Array      # the order the last prediction used


B_H = ("bh1", "bh2")


def _b_factor(h, k0, b_h):
  """The factor B(h) multiplying the order-1 coefficient a = 1/2 in data-prediction coordinates:
  h (bh1) or k0 = 1 - e^{-h} (bh2)."""
  return h if b_h == "bh1" else k0


def _predict(x, d0, state_d, state_h, h, order, b_h):
  """UniP-order from x at lambda with D values at lambda, lambda - h_1, lambda - h_1 - h_2."""
  k0, k1, k2, _ = kernel_moments(h)
  d1, d2 = state_d
  h1, h2 = state_h
  f01 = (d0 - d1) / h1
  f012 = (f01 - (d1 - d2) / h2) / (h1 + h2)
  drift = jax.lax.switch(order - 1, [
      lambda _: k0 * d0,
      lambda _: k0 * d0 + _b_factor(h, k0, b_h) * 0.5 * h * f01,
      lambda _: k0 * d0 + k1 * f01 + f012 * (k2 + h1 * k1),
  ], None)
  return jnp.exp(-h) * x + drift


def _correct(x_start, d_new, d0, d1, d2, h, h1, h2, order, b_h):
  """UniC-order for the step of size h from x_start (D = d0 there) now that D(x~) = d_new is known:
  nodes tau = h, 0, -h_1, -h_1 - h_2 (the first order + 1 of them)."""
  k0, k1, k2, k3 = kernel_moments(h)
  f_new = (d_new - d0) / h                           # f[0, h]
  f_1 = (d0 - d1) / h1                               # f[-h1, 0]
  f_2 = (d1 - d2) / h2
  f_new1 = (f_new - f_1) / (h + h1)                  # f[-h1, 0, h]
  f_12 = (f_1 - f_2) / (h1 + h2)
  f_new12 = (f_new1 - f_12) / (h + h1 + h2)          # f[-h1-h2, -h1, 0, h]
  # Newton form around the nodes 0, h, -h1, -h1-h2: p = d0 + f_new tau + f_new1 tau (tau - h)
  # + f_new12 tau (tau - h)(tau + h1); each product integrates exactly against the kernel.
  quad = k2 - h * k1
  cubic = k3 + (h1 - h) * k2 - h * h1 * k1
  drift = jax.lax.switch(order - 1, [
      lambda _: k0 * d0 + _b_factor(h, k0, b_h) * 0.5 * (d_new - d0),
      lambda _: k0 * d0 + k1 * f_new + f_new1 * quad,
      lambda _: k0 * d0 + k1 * f_new + f_new1 * quad + f_new12 * cubic,
  ], None)
  return jnp.exp(-h) * x_start + drift


def unipc(denoise: Callable, sigmas, noise, key=None, *, order: int = 2, b_h: str = "bh2",
          lower_order_final: bool = True, extra_args=None, trajectory: bool = False):
  """UniPC-`order` (UniP-order predictor + UniC-order corrector; order 1, 2 or 3) with B(h) `b_h`
  (bh1 | bh2). Deterministic; `key` is unused."""
  if order not in (1, 2, 3):
    raise ValueError(f"UniPC order must be 1, 2 or 3, not {order}")
  if b_h not in B_H:
    raise ValueError(f"UniPC's b_h must be one of {', '.join(B_H)}, not {b_h!r}")
  num_steps = int(np.asarray(jnp.shape(sigmas))[0]) - 1
  orders = jnp.asarray(multistep_orders(num_steps, order, lower_order_final))

  def step(state: UniPCState, sigma, sigma_next, i, k):
    d_new = call_x0(denoise, state.x, sigma, extra_args)
    h_last = state.h1
    # Correct the previous step (none before the first) with the new evaluation.
    corrected = _correct(state.x_start, d_new, state.d1, state.d2, state.d3, h_last, state.h2,
                         state.h3, state.order, b_h)
    x = jnp.where(i > 0, corrected, state.x)
    last = sigma_next <= 0
    h = jnp.log(sigma / jnp.where(last, 1.0, sigma_next))
    step_order = jnp.where(last, 1, orders[i])
    x_next = _predict(x, d_new, (state.d1, state.d2), (state.h1, state.h2), h, step_order, b_h)
    x_next = jnp.where(last, d_new, x_next)
    return UniPCState(x_next, x, d_new, state.d1, state.d2, h, state.h1, state.h2, step_order), d_new

  ones = jnp.ones((), jnp.result_type(jnp.asarray(sigmas).dtype, jnp.float32))
  zeros = jnp.zeros_like(noise)
  init = UniPCState(noise, noise, zeros, zeros, zeros, ones, ones, ones, jnp.ones((), jnp.int32))
  return scan_grid(step, init, lambda s: s.x, sigmas, None, trajectory)
