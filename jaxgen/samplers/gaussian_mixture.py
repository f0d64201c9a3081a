"""Gaussian mixtures with diagonal covariances: data whose exact denoiser is known in closed form.

If x_0 ~ sum_k pi_k N(mu_k, diag(s_k^2)) and x = x_0 + sigma z, then x ~ sum_k pi_k N(mu_k,
diag(s_k^2 + sigma^2)), and E[x_0 | x] = sum_k w_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)) with
w_k the posterior component probabilities. That is the ideal denoiser every diffusion sampler
approximates, so a sampler run on it differs from the data distribution only by its own
discretisation error: the truth of the sampler benchmark and of the convergence tests.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class GaussianMixture:
  log_weights: jax.Array  # [K], normalised
  means: jax.Array        # [K, D]
  stds: jax.Array         # [K, D]

  @classmethod
  def create(cls, weights, means, stds) -> "GaussianMixture":
    w = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float32)
    stds = np.broadcast_to(np.asarray(stds, np.float32), means.shape)
    return cls(jnp.asarray(np.log(w / w.sum()), jnp.float32), jnp.asarray(means), jnp.asarray(stds))

  @property
  def dim(self) -> int:
    return self.means.shape[1]

  def sample(self, key, num: int) -> jax.Array:
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.categorical(k_comp, self.log_weights, shape=(num,))
    return self.means[comp] + self.stds[comp] * jax.random.normal(k_noise, (num, self.dim))

  def _component_log_probs(self, x, sigma=0.0):
    var = jnp.square(self.stds) + jnp.square(sigma)          # [K, D]
    diff = x[:, None, :] - self.means[None]                   # [B, K, D]
    return (self.log_weights[None]
            - 0.5 * jnp.sum(jnp.square(diff) / var[None] + jnp.log(2 * math.pi * var)[None], -1))

  def log_prob(self, x, sigma=0.0) -> jax.Array:
    """log density of x (at noise level sigma: the mixture convolved with N(0, sigma^2 I))."""
    return jax.nn.logsumexp(self._component_log_probs(x, sigma), axis=-1)

  def denoise(self, x, sigma) -> jax.Array:
    """E[x_0 | x_0 + sigma z = x], exactly."""
    x2 = x.reshape(x.shape[0], -1)
    w = jax.nn.softmax(self._component_log_probs(x2, sigma), axis=-1)     # [B, K]
    var = jnp.square(self.stds)
    shrink = var / (var + jnp.square(sigma))                              # [K, D]
    means = self.means[None] + shrink[None] * (x2[:, None, :] - self.means[None])
    return jnp.einsum("bk,bkd->bd", w, means).reshape(x.shape)

  def score(self, x, sigma) -> jax.Array:
    """grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie)."""
    return (self.denoise(x, sigma) - x) / jnp.square(sigma)


def ring2d(num_modes: int = 8, radius: float = 1.0, std: float = 0.05) -> GaussianMixture:
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  return GaussianMixture.create(np.ones(num_modes), means, std)


def random_mixture(dim: int = 64, num_modes: int = 16, seed: int = 0, mean_scale: float = 0.5,
                   std_range=(0.05, 0.3)) -> GaussianMixture:
  """Unequal weights, means ~ N(0, mean_scale^2 I), per-dimension stds uniform in std_range."""
  rng = np.random.default_rng(seed)
  weights = rng.uniform(0.5, 1.5, num_modes)
  means = rng.normal(0.0, mean_scale, (num_modes, dim))
  stds = rng.uniform(*std_range, (num_modes, dim))
  return GaussianMixture.create(weights, means, stds)


def sliced_wasserstein(key, a: jax.Array, b: jax.Array, num_projections: int = 256) -> jax.Array:
  """Sliced 2-Wasserstein distance between two equal-size point sets [N, D]: the root mean over
  random unit directions of the W2^2 of the projected (sorted) samples."""
  dirs = jax.random.normal(key, (a.shape[1], num_projections))
  dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
  pa, pb = jnp.sort(a @ dirs, axis=0), jnp.sort(b @ dirs, axis=0)
  return jnp.sqrt(jnp.mean(jnp.square(pa - pb)))
