"""Adversarial objectives and penalties, each a pure function of discriminator outputs.

Discriminator outputs are raw logits (or critic values for the Wasserstein objectives), any shape:
a PatchGAN's [B, h, w] map is averaged like a [B] vector. Each objective is a pair
(discriminator loss, generator loss), both to be minimised:

| kind | discriminator | generator |
|---|---|---|
| minimax (Goodfellow et al. 2014, saturating) | -log D(x) - log(1 - D(G(z))) | log(1 - D(G(z))) |
| non_saturating (same paper, the "-log D trick") | as minimax | -log D(G(z)) |
| least_squares (Mao et al. 2017, a=0, b=1, c=1) | (D(x) - 1)^2 / 2 + D(G(z))^2 / 2 | (D(G(z)) - 1)^2 / 2 |
| hinge (Lim & Ye 2017; Miyato et al. 2018) | relu(1 - D(x)) + relu(1 + D(G(z))) | -D(G(z)) |
| wasserstein (Arjovsky et al. 2017; clip the critic) | D(G(z)) - D(x) | -D(G(z)) |
| wgan_gp (Gulrajani et al. 2017) | as wasserstein, + the gradient penalty | -D(G(z)) |

with D(x) = sigmoid(logit) for the first two, written with softplus for stability:
-log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

OBJECTIVES = ("minimax", "non_saturating", "least_squares", "hinge", "wasserstein", "wgan_gp")
WASSERSTEIN = ("wasserstein", "wgan_gp")


def _mean(x: jax.Array) -> jax.Array:
  return jnp.mean(x.astype(jnp.float32))


def discriminator_loss(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
  """The discriminator's loss on its outputs for real and generated examples (without penalties)."""
  if kind in ("minimax", "non_saturating"):
    return _mean(jax.nn.softplus(-real)) + _mean(jax.nn.softplus(fake))
  if kind == "least_squares":
    return 0.5 * _mean((real - 1.0) ** 2) + 0.5 * _mean(fake ** 2)
  if kind == "hinge":
    return _mean(jax.nn.relu(1.0 - real)) + _mean(jax.nn.relu(1.0 + fake))
  if kind in WASSERSTEIN:
    return _mean(fake) - _mean(real)
  raise ValueError(f"unknown objective '{kind}'; choose from {', '.join(OBJECTIVES)}")


def generator_loss(kind: str, fake: jax.Array) -> jax.Array:
  """The generator's loss on the discriminator's outputs for its samples."""
  if kind == "minimax":
    return -_mean(jax.nn.softplus(fake))  # log(1 - sigmoid(l)) = -softplus(l)
  if kind == "non_saturating":
    return _mean(jax.nn.softplus(-fake))
  if kind == "least_squares":
    return 0.5 * _mean((fake - 1.0) ** 2)
  if kind in ("hinge",) + WASSERSTEIN:
    return -_mean(fake)
  raise ValueError(f"unknown objective '{kind}'; choose from {', '.join(OBJECTIVES)}")


def decision_threshold(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
  """Where the discriminator's output separates "real" from "fake": 0 for logits and hinge, 1/2
  for least squares (targets 1 and 0), and the midpoint of the two means for a critic, whose
  values carry no absolute meaning."""
  if kind == "least_squares":
    return jnp.float32(0.5)
  if kind in WASSERSTEIN:
    return 0.5 * (_mean(real) + _mean(fake))
  return jnp.float32(0.0)


def discriminator_accuracy(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
  """The fraction of real and generated examples (equally weighted) the discriminator classifies right."""
  t = jax.lax.stop_gradient(decision_threshold(kind, real, fake))
  return 0.5 * (_mean(real > t) + _mean(fake < t))


def _per_example_grad_norm(critic: Callable, x: jax.Array, coupled: bool = False) -> jax.Array:
  """||d critic(x)_i / d x_i|| for every example i, the other examples held fixed.

  critic(v) -> [B, ...] outputs, for a critic that treats examples independently (no batch
  normalisation or batch features). coupled: critic(v, reference) instead, for one whose outputs
  couple the batch (minibatch discrimination): it must compare each v_i with the rows of reference
  (here x itself) in place of the other rows of v, so that the gradient of the summed outputs with
  respect to v splits into per-example gradients."""
  summed = lambda v: jnp.sum((critic(v, x) if coupled else critic(v)).astype(jnp.float32))
  grads = jax.grad(summed)(x)
  return jnp.sqrt(jnp.sum(grads.reshape(x.shape[0], -1) ** 2, axis=-1) + 1e-12)


def gradient_penalty(critic: Callable, real: jax.Array, fake: jax.Array, key: jax.Array,
                     target: float = 1.0, coupled: bool = False) -> jax.Array:
  """WGAN-GP's E[(||grad D(x_hat)|| - target)^2] on x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1]
  per example (Gulrajani et al. 2017, Algorithm 1; multiply by lambda = 10). critic: as for
  _per_example_grad_norm (a coupled critic is compared with the interpolates)."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
  x_hat = eps * real + (1.0 - eps) * fake
  return jnp.mean((_per_example_grad_norm(critic, x_hat, coupled) - target) ** 2)


def r1_penalty(critic: Callable, real: jax.Array, coupled: bool = False) -> jax.Array:
  """R1 (Mescheder et al. 2018): E[||grad D(x)||^2] on real data (multiply by gamma / 2). critic: as
  for _per_example_grad_norm."""
  return jnp.mean(_per_example_grad_norm(critic, real, coupled) ** 2)
