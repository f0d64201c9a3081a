"""DDPM ancestral sampling and DDIM, on any noise grid (see `core` for the coordinates).

Both step from sigma to sigma' < sigma through the posterior of the forward process given the
denoiser's x_0 = D(x, sigma) and its noise eps = (x - x_0) / sigma:
- DDIM (Song et al. 2021, eq. 12): x' = x_0 + sqrt(sigma'^2 - c^2) eps + c z with
  c = eta sigma' sqrt(1 - sigma'^2 / sigma^2) (eq. 16 in these coordinates). eta = 0 is the
  deterministic DDIM (Euler on the probability-flow ODE in sigma); eta = 1 is DDPM with the
  posterior variance. k-diffusion's "Euler ancestral" is this same update, so `euler_ancestral` is
  DDIM with eta = 1 by default.
- DDPM (Ho et al. 2020, Algorithm 2; any subsequence as in improved DDPM section 4): the posterior
  mean x_0 + (sigma'^2 / sigma^2)(x - x_0), the mean of DDIM at eta = 1, plus noise of the variance
  'fixed_small' (the posterior's, betatilde), 'fixed_large' (the step's beta) or 'learned'
  (improved DDPM's interpolation frac log beta + (1 - frac) log betatilde, frac = (v + 1) / 2). beta
  and betatilde of a step are those of the VP process the grid defines (alpha^2 = 1 / (1 + sigma^2)),
  so on a respaced DDPM schedule they are the respaced betas. No noise enters the step to sigma' = 0.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.samplers.core import gaussian_like, require_key, scan_grid, split_output


def ddim(denoise: Callable, sigmas, noise, key=None, *, eta=0.0, extra_args=None,
         trajectory: bool = False):
  """DDIM with eta (traced): x_K = noise (already at scale sigma_0). NFE = K."""
  require_key(key, "ddim", not (isinstance(eta, (int, float)) and eta == 0))
  extra = extra_args or {}

  def step(x, sigma, sigma_next, i, k):
    x0 = split_output(denoise(x, sigma, **extra))[0]
    eps = (x - x0) / sigma
    c = eta * sigma_next * jnp.sqrt(jnp.maximum(1.0 - jnp.square(sigma_next / sigma), 0.0))
    c = jnp.minimum(c, sigma_next)
    x = x0 + jnp.sqrt(jnp.square(sigma_next) - jnp.square(c)) * eps
    if key is not None:
      x = x + c * gaussian_like(k, x)
    return x, x0

  return scan_grid(step, noise, lambda x: x, sigmas, key, trajectory)


def euler_ancestral(denoise: Callable, sigmas, noise, key=None, *, eta=1.0, extra_args=None,
                    trajectory: bool = False):
  """Euler-ancestral: an Euler step to sigma_down = sqrt(sigma'^2 - c^2), then noise of std c; in
  these coordinates the DDIM update with the same eta (the two coincide step for step)."""
  return ddim(denoise, sigmas, noise, key, eta=eta, extra_args=extra_args, trajectory=trajectory)


DDPM_VARIANCES = ("fixed_small", "fixed_large", "learned")


def ddpm_step_log_variance(sigma, sigma_next, variance: str, var_output=None):
  """log of the DDPM step's noise variance in these coordinates (x = x_t / alpha): the VP step's
  beta = 1 - alpha_t^2 / alpha_s^2 and betatilde = beta sigma_s^2 / sigma_t^2 (VP sigmas), divided
  by alpha_s^2 = 1 / (1 + sigma'^2)."""
  s2, n2 = jnp.square(sigma), jnp.square(sigma_next)
  log_scale = jnp.log1p(n2)                       # -log alpha_s^2
  log_beta = jnp.log(s2 - n2) - jnp.log1p(s2)     # 1 - (1 + n2) / (1 + s2)
  # betatilde = beta (1 - abar_s) / (1 - abar_t) = beta (n2 / (1 + n2)) / (s2 / (1 + s2))
  log_beta_tilde = log_beta + jnp.log(n2) - jnp.log1p(n2) - jnp.log(s2) + jnp.log1p(s2)
  if variance == "fixed_small":
    return log_beta_tilde + log_scale
  if variance == "fixed_large":
    return log_beta + log_scale
  frac = 0.5 * (var_output + 1.0)
  return frac * log_beta + (1.0 - frac) * log_beta_tilde + log_scale


def ddpm(denoise: Callable, sigmas, noise, key, *, variance: str = "fixed_small", extra_args=None,
         trajectory: bool = False):
  """Ancestral sampling with a fixed or learned reverse variance. NFE = K."""
  if variance not in DDPM_VARIANCES:
    raise ValueError(f"variance must be one of {DDPM_VARIANCES}, not '{variance}'")
  require_key(key, "ddpm", True)
  extra = extra_args or {}

  def step(x, sigma, sigma_next, i, k):
    x0, var_output = split_output(denoise(x, sigma, **extra))
    if variance == "learned" and var_output is None:
      raise ValueError("variance='learned' needs a denoiser that returns a Prediction with var_output")
    mean = x0 + jnp.square(sigma_next / sigma) * (x - x0)
    last = sigma_next <= 0
    # At sigma' = 0 the log-variances are -inf or nan; the step adds no noise there anyway.
    safe_next = jnp.where(last, 0.5 * sigma, sigma_next)
    log_var = ddpm_step_log_variance(sigma, safe_next, variance, var_output)
    std = jnp.where(last, 0.0, jnp.exp(0.5 * log_var))
    return mean + std * gaussian_like(k, x), x0

  return scan_grid(step, noise, lambda x: x, sigmas, key, trajectory)
