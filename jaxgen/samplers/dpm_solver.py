"""DPM-Solver (Lu et al. 2022a) and DPM-Solver++ (Lu et al. 2022b) in half-log-SNR time.

In the sampler's coordinates (x = x_t / alpha, `core`) lambda = log(alpha / sigma_vp) = -log sigma
and a step from sigma to sigma' has h = lambda' - lambda = log(sigma / sigma'). The exact solution
of the probability-flow ODE is x' = e^{-h} x + int_0^h e^{-(h - tau)} D(lambda + tau) dtau (data
prediction) = x - sigma' int_0^h e^{tau'} eps dtau' (noise prediction); the solvers differ in how
they approximate D or eps over the step.

- `dpm_solver` (noise prediction, singlestep, Algorithms 1 and 2 of Lu et al. 2022a): order 1 is
  DDIM; order 2 evaluates once more at lambda + h / 2, order 3 at lambda + h / 3 and 2h / 3.
  NFE = order per step, except the last step to sigma' = 0, which is first order (x' = D; the higher
  orders' coefficients have no limit there). With lower_order_final, steps of a K < 15 grid drop to
  the order that the remaining steps can afford (the paper's "DPM-Solver-fast" idea).
- `dpmpp_multistep` (data prediction, multistep): DPM-Solver++(2M) is Algorithm 2 of Lu et al.
  2022b, D_d = (1 + 1/(2r)) D_i - D_{i-1} / (2r), r = h_{i-1} / h_i; (3M) integrates the quadratic
  through the last three D exactly. With eta > 0 it is the SDE solver: the kernel becomes
  (1 + eta) e^{-(1 + eta)(h - tau)}, x keeps e^{-(1 + eta) h} (times sigma' / sigma) of itself and
  gains noise sigma' sqrt(1 - e^{-2 eta h}) z; eta = 1 is SDE-DPM-Solver++ (its first order is DDPM
  with the posterior variance). History (the last D values and step sizes) rides in the scan carry.
  NFE = K.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.samplers.core import call_x0, gaussian_like, require_key, scan_grid


def singlestep_orders(num_steps: int, order: int, lower_order_final: bool = True) -> np.ndarray:
  """The order of each of K steps: `order`; with lower_order_final and K < 15 the last step first
  order and the one before at most second. Whatever this says, a step to sigma' = 0 runs first
  order (decided at run time, as the grid is traced)."""
  orders = np.full(num_steps, order, np.int32)
  if lower_order_final and num_steps < 15:
    orders[-1] = 1
    if num_steps >= 2:
      orders[-2] = min(orders[-2], 2)
  return orders


def grid_orders(orders, sigmas) -> np.ndarray:
  """The orders actually run on a concrete grid: a last step to 0 is first order."""
  orders = np.array(orders)
  if float(np.asarray(sigmas)[-1]) == 0.0:
    orders[-1] = 1
  return orders


def dpm_solver_nfe(sigmas, order: int, lower_order_final: bool = True) -> int:
  num_steps = len(np.asarray(sigmas)) - 1
  return int(np.sum(grid_orders(singlestep_orders(num_steps, order, lower_order_final), sigmas)))


def dpm_solver(denoise: Callable, sigmas, noise, key=None, *, order: int = 3,
               lower_order_final: bool = True, extra_args=None, trajectory: bool = False):
  """Singlestep DPM-Solver-`order` (1, 2 or 3). Deterministic; `key` is unused."""
  if order not in (1, 2, 3):
    raise ValueError(f"DPM-Solver order must be 1, 2 or 3, not {order}")
  num_steps = int(np.asarray(jnp.shape(sigmas))[0]) - 1
  orders = jnp.asarray(singlestep_orders(num_steps, order, lower_order_final))
  eps_of = lambda x, s: (x - call_x0(denoise, x, s, extra_args)) / s

  def step(x, sigma, sigma_next, i, k):
    x0 = call_x0(denoise, x, sigma, extra_args)
    eps = (x - x0) / sigma
    first = x0 + sigma_next * eps  # x - (sigma - sigma') eps: DDIM

    def second(_):
      h = jnp.log(sigma / sigma_next)
      s1 = sigma * jnp.exp(-0.5 * h)
      u = x - s1 * jnp.expm1(0.5 * h) * eps
      # Algorithm 1 with r1 = 1/2: x' = x - sigma' (e^h - 1) eps - sigma' (e^h - 1)(eps_1 - eps).
      return x - sigma_next * jnp.expm1(h) * eps_of(u, s1)

    def third(_):
      h = jnp.log(sigma / sigma_next)
      r1, r2 = 1.0 / 3.0, 2.0 / 3.0
      s1, s2 = sigma * jnp.exp(-r1 * h), sigma * jnp.exp(-r2 * h)
      u1 = x - s1 * jnp.expm1(r1 * h) * eps
      d1 = eps_of(u1, s1) - eps
      u2 = (x - s2 * jnp.expm1(r2 * h) * eps
            - s2 * (r2 / r1) * (jnp.expm1(r2 * h) / (r2 * h) - 1.0) * d1)
      d2 = eps_of(u2, s2) - eps
      return (x - sigma_next * jnp.expm1(h) * eps
              - (sigma_next / r2) * (jnp.expm1(h) / h - 1.0) * d2)

    step_order = jnp.where(sigma_next > 0, orders[i], 1)
    x_next = jax.lax.switch(step_order - 1, [lambda _: first, second, third], None)
    return x_next, x0

  return scan_grid(step, noise, lambda x: x, sigmas, key, trajectory)


def kernel_moments(h, rate=1.0):
  """K_n = int_0^h rate e^{-rate (h - tau)} tau^n dtau for n = 0..3, by parts: K_0 = 1 - e^{-rate h},
  K_n = h^n - n K_{n-1} / rate. Integrating a polynomial model of D(lambda + tau) against this kernel
  is the exponential integrator of the data-prediction ODE (rate 1) or SDE (rate 1 + eta)."""
  k0 = -jnp.expm1(-rate * h)
  k1 = h - k0 / rate
  k2 = jnp.square(h) - 2.0 * k1 / rate
  k3 = h ** 3 - 3.0 * k2 / rate
  return k0, k1, k2, k3


class MultistepState(NamedTuple):
  x: jax.Array
  d_prev: jax.Array    # D at the previous step
  d_prev2: jax.Array   # D two steps back
  h_prev: jax.Array    # the previous step's h
  h_prev2: jax.Array


def multistep_orders(num_steps: int, order: int, lower_order_final: bool = True) -> np.ndarray:
  """Step i's order: min(order, i + 1) (the history it has), capped as in `singlestep_orders`."""
  orders = np.minimum(order, np.arange(1, num_steps + 1)).astype(np.int32)
  return singlestep_orders(num_steps, order, lower_order_final).clip(max=orders)


def dpmpp_multistep(denoise: Callable, sigmas, noise, key=None, *, order: int = 2, eta=0.0,
                    lower_order_final: bool = True, extra_args=None, trajectory: bool = False):
  """DPM-Solver++(2M) (order=2) or (3M) (order=3); eta > 0 (traced): the SDE variant."""
  if order not in (1, 2, 3):
    raise ValueError(f"DPM-Solver++ multistep order must be 1, 2 or 3, not {order}")
  require_key(key, "dpmpp_sde", not (isinstance(eta, (int, float)) and eta == 0))
  num_steps = int(np.asarray(jnp.shape(sigmas))[0]) - 1
  orders = jnp.asarray(multistep_orders(num_steps, order, lower_order_final))

  def step(state: MultistepState, sigma, sigma_next, i, k):
    x = state.x
    d0 = call_x0(denoise, x, sigma, extra_args)
    last = sigma_next <= 0
    h = jnp.log(sigma / jnp.where(last, 1.0, sigma_next))  # finite stand-in on the last step
    rate = 1.0 + eta
    k0, k1, k2, _ = kernel_moments(h, rate)
    f01 = (d0 - state.d_prev) / state.h_prev               # divided differences in lambda
    f12 = (state.d_prev - state.d_prev2) / state.h_prev2
    f012 = (f01 - f12) / (state.h_prev + state.h_prev2)
    drift = jax.lax.switch(jnp.where(last, 1, orders[i]) - 1, [
        lambda _: k0 * d0,
        lambda _: k0 * (d0 + 0.5 * h * f01),  # Lu et al. 2022b: D_d = D + (D - D_prev) / (2 r)
        lambda _: k0 * d0 + k1 * f01 + f012 * (k2 + state.h_prev * k1),
    ], None)
    x_next = jnp.exp(-rate * h) * x + drift
    if key is not None:
      x_next = x_next + sigma_next * jnp.sqrt(-jnp.expm1(-2.0 * eta * h)) * gaussian_like(k, x)
    x_next = jnp.where(last, d0, x_next)
    return MultistepState(x_next, d0, state.d_prev, h, state.h_prev), d0

  ones = jnp.ones((), jnp.result_type(jnp.asarray(sigmas).dtype, jnp.float32))
  init = MultistepState(noise, jnp.zeros_like(noise), jnp.zeros_like(noise), ones, ones)
  return scan_grid(step, init, lambda s: s.x, sigmas, key, trajectory)
