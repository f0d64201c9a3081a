"""Training objectives of the DDPM family.

`diffusion_loss` is Ho et al.'s Algorithm 1 generalised: t ~ U{0..T-1}, x_t by the closed-form
jump, a weighted MSE in the network's own target space (see `parameterization` for the
weightings), and, for a learned variance, improved DDPM's hybrid objective
L_hybrid = L_simple + lambda L_vlb, where L_vlb = T E_t[L_t] (the sum over t, estimated from the
sampled t, in bits per dimension) is computed with the mean's prediction behind a stop-gradient so
it trains only the variance (Nichol & Dhariwal 2021, section 3.1; lambda = 0.001).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion import ddpm, likelihood, parameterization
from jaxgen.diffusion.schedules import DiscreteSchedule


def diffusion_loss(apply: Callable, schedule: DiscreteSchedule, x0: jax.Array, key: jax.Array, *,
                   prediction: str = "eps", weighting: str = "simple", min_snr_gamma: float = 5.0,
                   sigma_data: float = 0.5, learn_variance: bool = False, vlb_weight: float = 1e-3,
                   discrete: bool = True):
  """The batch-mean loss and its parts.

  apply(net_x, net_t, key) -> (output, var_output) is the network with its dropout key. All draws
  have the global batch shape, so they do not depend on how the batch is sharded across devices.
  """
  t_key, noise_key, model_key = jax.random.split(key, 3)
  t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = ddpm.q_sample(schedule, x0, t, noise)
  alpha, sigma = ddpm.alpha_sigma(schedule, t, x0.ndim)

  pred = ddpm.predict(lambda net_x, net_t: apply(net_x, net_t, model_key), schedule, x_t, t,
                      prediction=prediction, sigma_data=sigma_data)

  axes = tuple(range(1, x0.ndim))
  goal = parameterization.target(prediction, x0, noise, alpha, sigma, sigma_data)
  weight = parameterization.target_loss_weight(weighting, prediction, alpha, sigma,
                                               gamma=min_snr_gamma, sigma_data=sigma_data)
  mse = jnp.mean(weight * jnp.square(pred.output - goal), axis=axes)
  aux = {"mse": jnp.mean(mse)}
  per_example = mse
  if learn_variance:
    # The bound's gradient reaches only the variance: the mean comes from a frozen x0.
    frozen = pred._replace(x0=jax.lax.stop_gradient(pred.x0), eps=jax.lax.stop_gradient(pred.eps))
    nats = likelihood.vlb_term(schedule, x0, x_t, t, frozen, variance="learned", discrete=discrete)
    vlb_bits_per_dim = nats / (math.prod(x0.shape[1:]) * math.log(2.0))
    per_example = per_example + vlb_weight * schedule.num_timesteps * vlb_bits_per_dim
    aux["vlb"] = jnp.mean(vlb_bits_per_dim)
  return jnp.mean(per_example), aux
