"""What the network predicts, the exact conversions between predictions, and loss weightings.

For the variance-preserving forward process x_t = alpha x_0 + sigma eps (alpha^2 + sigma^2 = 1):
- "eps": the noise; x_0 = (x_t - sigma eps) / alpha.
- "x0":  the clean data; eps = (x_t - alpha x_0) / sigma.
- "v":   v = alpha eps - sigma x_0 (Salimans & Ho 2022); x_0 = alpha x_t - sigma v,
         eps = sigma x_t + alpha v.
- "edm": EDM's preconditioned denoiser (Karras et al. 2022, Table 1). With the VE view
         x = x_t / alpha = x_0 + s eps, s = sigma / alpha, the network F sees c_in(s) x and c_noise(s)
         and D(x, s) = c_skip(s) x + c_out(s) F, D being the estimate of x_0.
Whatever the network predicts, the denoiser D(x, s) = E[x_0 | x_t] is the x_0 estimate, so every
sampler can work from `x0` (and `eps`) alone.

Loss weightings are stated as the weight w(t) on ||x0_hat - x0||^2; the loss is computed in the
network's own target space with the equivalent weight (the errors differ by known factors:
||eps err||^2 = SNR ||x0 err||^2, ||v err||^2 = (1 + SNR) ||x0 err||^2, ||F err||^2 = ||x0 err||^2 / c_out^2):
- "simple": uniform on the network's own target (Ho et al.'s L_simple for eps);
- "snr":    w = SNR, i.e. the eps-MSE whatever the network predicts;
- "min_snr": w = min(SNR, gamma) (Hang et al. 2023, gamma = 5);
- "edm":    w = (s^2 + sigma_data^2) / (s sigma_data)^2 (Karras et al. 2022, eq. 8).
"""

from __future__ import annotations

import jax.numpy as jnp

PREDICTIONS = ("eps", "x0", "v", "edm")
WEIGHTINGS = ("simple", "snr", "min_snr", "edm")


def edm_preconditioning(s, sigma_data: float = 0.5):
  """(c_skip, c_out, c_in, c_noise) for VE noise level s (Karras et al. 2022, Table 1)."""
  s2, d2 = jnp.square(s), sigma_data ** 2
  c_skip = d2 / (s2 + d2)
  c_out = s * sigma_data * jnp.sqrt(1.0 / (s2 + d2))
  c_in = jnp.sqrt(1.0 / (s2 + d2))
  c_noise = 0.25 * jnp.log(s)
  return c_skip, c_out, c_in, c_noise


def network_input(prediction: str, x_t, alpha, sigma, sigma_data: float = 0.5):
  """What the network sees: x_t itself, or c_in(s) x_t / alpha with EDM preconditioning."""
  if prediction != "edm":
    return x_t
  _, _, c_in, _ = edm_preconditioning(sigma / alpha, sigma_data)
  return c_in * x_t / alpha


def to_x0_eps(prediction: str, output, x_t, alpha, sigma, sigma_data: float = 0.5):
  """(x0, eps) implied by the network output; alpha and sigma broadcast against x_t."""
  if prediction == "eps":
    return (x_t - sigma * output) / alpha, output
  if prediction == "x0":
    x0 = output
  elif prediction == "v":
    x0 = alpha * x_t - sigma * output
  elif prediction == "edm":
    c_skip, c_out, _, _ = edm_preconditioning(sigma / alpha, sigma_data)
    x0 = c_skip * (x_t / alpha) + c_out * output
  else:
    raise ValueError(f"prediction must be one of {PREDICTIONS}, not '{prediction}'")
  return x0, (x_t - alpha * x0) / sigma


def target(prediction: str, x0, eps, alpha, sigma, sigma_data: float = 0.5):
  """The network output that is exactly right for this (x0, eps)."""
  if prediction == "eps":
    return eps
  if prediction == "x0":
    return x0
  if prediction == "v":
    return alpha * eps - sigma * x0
  if prediction == "edm":
    s = sigma / alpha
    c_skip, c_out, _, _ = edm_preconditioning(s, sigma_data)
    return (x0 - c_skip * (x0 + s * eps)) / c_out
  raise ValueError(f"prediction must be one of {PREDICTIONS}, not '{prediction}'")


def target_scale_sq(prediction: str, alpha, sigma, sigma_data: float = 0.5):
  """k^2 with ||target error||^2 = k^2 ||x0 error||^2 at this noise level."""
  snr = jnp.square(alpha / sigma)
  if prediction == "eps":
    return snr
  if prediction == "x0":
    return jnp.ones_like(snr)
  if prediction == "v":
    return 1.0 + snr
  if prediction == "edm":
    _, c_out, _, _ = edm_preconditioning(sigma / alpha, sigma_data)
    return 1.0 / jnp.square(c_out)
  raise ValueError(f"prediction must be one of {PREDICTIONS}, not '{prediction}'")


def x0_loss_weight(weighting: str, prediction: str, alpha, sigma, *, gamma: float = 5.0,
                   sigma_data: float = 0.5):
  """w(t) on ||x0_hat - x0||^2 for the named weighting."""
  snr = jnp.square(alpha / sigma)
  if weighting == "simple":
    return target_scale_sq(prediction, alpha, sigma, sigma_data)
  if weighting == "snr":
    return snr
  if weighting == "min_snr":
    return jnp.minimum(snr, gamma)
  if weighting == "edm":
    s2 = jnp.square(sigma / alpha)
    return (s2 + sigma_data ** 2) / (s2 * sigma_data ** 2)
  raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, not '{weighting}'")


def target_loss_weight(weighting: str, prediction: str, alpha, sigma, **kwargs):
  """The weight on ||output - target||^2 equivalent to `x0_loss_weight`. Computed as a ratio
  rather than by converting errors to x0 space, so large factors (SNR near t = 0) cancel exactly
  where they should (e.g. "simple" is exactly 1)."""
  if weighting == "simple":
    return jnp.ones_like(alpha / sigma)
  sigma_data = kwargs.get("sigma_data", 0.5)
  return (x0_loss_weight(weighting, prediction, alpha, sigma, **kwargs)
          / target_scale_sq(prediction, alpha, sigma, sigma_data))
