"""The DDPM variational bound in bits per dimension (Ho et al. 2020, eq. 5; Sohl-Dickstein 2015).

    -log p(x0) <= KL(q(x_T|x0) || N(0, I))                                  prior
                  + sum_{t>1} KL(q(x_{t-1}|x_t, x0) || p(x_{t-1}|x_t))      diffusion terms
                  - log p(x0|x1)                                            decoder

Timestep index t in code runs 0..T-1 (the paper's t = index + 1). Images use the discretised
Gaussian decoder over 256 bins of [-1, 1] (Ho et al. 2020, eq. 13) and so give a bound on the
negative log-likelihood of 8-bit data; continuous data (2D points) use a Gaussian density decoder,
so their "bits per dimension" are of a density and may be negative. Every term is exact in t: the
bound sums all T terms, each from one draw of x_t.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule, extract


def normal_kl(mean1, logvar1, mean2, logvar2):
  """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
  return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + jnp.square(mean1 - mean2) * jnp.exp(-logvar2))


def discretized_gaussian_log_likelihood(x, mean, log_scale, bins: int = 256):
  """log P(x) of data on `bins` levels of [-1, 1] under N(mean, e^(2 log_scale)), integrated over
  each level's bin; the outermost bins extend to -inf and +inf so the probabilities sum to 1."""
  half_bin = 1.0 / (bins - 1)
  inv_std = jnp.exp(-log_scale)
  upper = inv_std * (x - mean + half_bin)
  lower = inv_std * (x - mean - half_bin)
  log_cdf_upper = log_ndtr(upper)
  log_sf_lower = log_ndtr(-lower)
  # Phi(upper) - Phi(lower) = Phi(b) - Phi(a) with (a, b) = (lower, upper) below the mean and
  # (-upper, -lower) above it, so both lie in the lower tail where log_ndtr keeps its precision
  # (in the upper tail both CDFs round to 1 and the difference to 0). Then
  # log(Phi(b) - Phi(a)) = log Phi(b) + log(-expm1(log Phi(a) - log Phi(b))).
  above = x > mean
  a = jnp.where(above, -upper, lower)
  b = jnp.where(above, -lower, upper)
  log_b = log_ndtr(b)
  log_delta = log_b + jnp.log(-jnp.expm1(jnp.minimum(log_ndtr(a) - log_b, -1e-30)))
  return jnp.where(x < -1.0 + half_bin, log_cdf_upper,
                   jnp.where(x > 1.0 - half_bin, log_sf_lower, log_delta))


def gaussian_log_density(x, mean, logvar):
  return -0.5 * (math.log(2 * math.pi) + logvar + jnp.square(x - mean) * jnp.exp(-logvar))


def _sum_per_example(v):
  return jnp.sum(v.reshape(v.shape[0], -1), axis=1)


def vlb_term(schedule: DiscreteSchedule, x0, x_t, t, pred: ddpm.Prediction, *,
             variance="fixed_small", clip_x0: bool = False, discrete: bool = True):
  """L_t for one draw of x_t, per example in nats: the decoder's -log p(x0|x1) where t == 0,
  KL(q(x_{t-1}|x_t, x0) || p(x_{t-1}|x_t)) elsewhere. t: [B] timestep indices."""
  model_mean, model_logvar, _ = ddpm.p_mean_log_variance(schedule, pred, x_t, t, variance=variance,
                                                         clip_x0=clip_x0)
  true_mean = ddpm.posterior_mean(schedule, x0, x_t, t)
  true_logvar = extract(schedule.posterior_log_variance_clipped, t, x0.ndim)
  kl = _sum_per_example(normal_kl(true_mean, true_logvar, model_mean, model_logvar))
  if discrete:
    decoder = -_sum_per_example(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar))
  else:
    decoder = -_sum_per_example(gaussian_log_density(x0, model_mean, model_logvar))
  return jnp.where(t == 0, decoder, kl)


def prior_term(schedule: DiscreteSchedule, x0):
  """KL(q(x_T | x0) || N(0, I)) per example, in nats."""
  abar_T = schedule.alphas_cumprod[-1]
  return _sum_per_example(normal_kl(jnp.sqrt(abar_T) * x0, jnp.log1p(-abar_T) * jnp.ones_like(x0),
                                    jnp.zeros_like(x0), jnp.zeros_like(x0)))


def vlb_terms(denoise: Callable, schedule: DiscreteSchedule, x0: jax.Array, key: jax.Array, *,
              variance="fixed_small", clip_x0: bool = False, discrete: bool = True):
  """Per-example terms of the bound, in nats: (prior [B], per-timestep [T, B]; index 0 is the
  decoder's -log p(x0|x1)), one `lax.scan` over the T timesteps.
  denoise(x_t, t) -> ddpm.Prediction (see `ddpm.from_eps` for an eps function)."""
  variance = ddpm.resolve_variance(schedule, variance)

  def term(_, t):
    t_batch = jnp.full((x0.shape[0],), t, jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(key, t), x0.shape, x0.dtype)
    x_t = ddpm.q_sample(schedule, x0, t_batch, noise)
    return None, vlb_term(schedule, x0, x_t, t_batch, denoise(x_t, t_batch), variance=variance,
                          clip_x0=clip_x0, discrete=discrete)

  _, terms = jax.lax.scan(term, None, jnp.arange(schedule.num_timesteps))
  return prior_term(schedule, x0), terms


def bits_per_dim(denoise: Callable, schedule: DiscreteSchedule, x0: jax.Array, key: jax.Array,
                 **kwargs) -> dict[str, jax.Array]:
  """Per-example negative ELBO in bits per dimension, with its prior and decoder parts."""
  prior, terms = vlb_terms(denoise, schedule, x0, key, **kwargs)
  scale = 1.0 / (math.prod(x0.shape[1:]) * math.log(2.0))
  return {"bpd": (prior + terms.sum(0)) * scale, "prior_bpd": prior * scale,
          "decoder_bpd": terms[0] * scale, "diffusion_bpd": terms[1:].sum(0) * scale}
