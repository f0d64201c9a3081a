"""The two-player update: n_critic discriminator steps, then one generator step, as one pure
function the training engine compiles (inside its `lax.scan` over steps, under its data-parallel
jit: BatchNorm, minibatch features and packing see the global batch, so the step computes the same
on 1 device and on 8).

Each player has its own optimizer and state (separate learning rates: TTUR, Heusel et al. 2017).
With n_critic = k the global batch is split into k micro-batches (rows i, i+k, ...: every device
keeps an equal share), one per critic step; the generator step draws as many latents as one
micro-batch holds. With unrolled_steps = k > 0 (Metz et al. 2017) the generator's loss is taken
against the discriminator after k further discriminator updates on the same data, written as a
`lax.scan` and differentiated through, the second-order terms included; the discriminator itself
keeps only its ordinary update. The unrolled updates take the discriminator's own optimizer and
state (Metz et al.), or `unroll_tx` from a fresh state (plain SGD: its derivative is the Hessian's
alone, where Adam's divides by sqrt(v) and is large wherever a second moment is small).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgen.gan import losses
from jaxgen.train.step import split_micro_batches


@dataclasses.dataclass(frozen=True)
class Players:
  """What the step needs of the networks (built by jaxgen.gan.method):
  - generate(g_params, g_state, z, key, lod) -> (x, new_g_state), in training mode;
  - discriminate(d_params, d_state, x, lod, reference=None) -> (logits, new_d_state), on packed
    x, in training mode (batch statistics; the power iteration advances): callers keep the new
    state only where the discriminator trains; reference (the gradient penalties'): the batch that
    batch-coupled features compare x with (see jaxgen.nn.gan.MinibatchDiscrimination);
  - pack(x) -> packed x; latent(key, n) -> z; real_view(x, lod) -> the reals at level of detail lod
    (identity unless progressive); lod(step) -> the level of detail (0 unless progressive)."""
  generate: Callable
  discriminate: Callable
  pack: Callable
  latent: Callable
  real_view: Callable
  lod: Callable


@dataclasses.dataclass(frozen=True)
class Settings:
  objective: str = "non_saturating"
  n_critic: int = 1
  unrolled_steps: int = 0
  gp_weight: float = 0.0        # WGAN-GP's lambda (wgan_gp: 10)
  r1_gamma: float = 0.0         # R1's gamma: the penalty is gamma / 2 E||grad D(x)||^2
  r1_every: int = 1             # lazy R1 (StyleGAN2): the penalty x k on every k-th step only
  weight_clip: float = 0.0      # WGAN: clip every critic parameter to [-c, c] after its update
  penalty_per_example: bool = True  # penalties through batch-coupled features: per example


def build_two_player_update(players: Players, settings: Settings, g_tx: optax.GradientTransformation,
                            d_tx: optax.GradientTransformation, field: str,
                            lr_schedules: tuple[Callable, Callable],
                            unroll_tx: optax.GradientTransformation | None = None) -> Callable:
  """(params, opt_state, mutable, batch, key, step) -> (params, opt_state, mutable, metrics), where
  params / opt_state / mutable are dicts with 'generator' and 'discriminator' entries. unroll_tx:
  the optimizer of the unrolled discriminator updates (None: d_tx, continuing from its state)."""
  s = settings

  def d_objective(d_params, d_state, real, fake, key, lod, step):
    """The discriminator's loss (with its penalties) on packed reals and fakes."""
    # Reals and fakes in separate calls: batch statistics and minibatch features then compare
    # examples of one kind, as in DCGAN and Salimans et al.
    real_logits, d_state = players.discriminate(d_params, d_state, real, lod)
    fake_logits, d_state = players.discriminate(d_params, d_state, fake, lod)
    loss = losses.discriminator_loss(s.objective, real_logits, fake_logits)
    # The penalties' critic: each example compared with the penalised batch itself held fixed, so
    # that the gradient is per example even through minibatch discrimination (the networks
    # without batch features ignore the reference). penalty_per_example=False: the gradient of the
    # summed logits, cross-example terms included.
    if s.penalty_per_example:
      critic = lambda x, reference: players.discriminate(d_params, d_state, x, lod, reference)[0]
    else:
      critic = lambda x, reference: players.discriminate(d_params, d_state, x, lod)[0]
    aux = {"d_real": jnp.mean(real_logits), "d_fake": jnp.mean(fake_logits),
           "d_accuracy": losses.discriminator_accuracy(s.objective, real_logits, fake_logits)}
    if s.gp_weight:
      gp = losses.gradient_penalty(critic, real, fake, key, coupled=True)
      loss = loss + s.gp_weight * gp
      aux["gradient_penalty"] = gp
    if s.r1_gamma:
      r1 = losses.r1_penalty(critic, real, coupled=True) if s.r1_every == 1 else jax.lax.cond(
          # Lazy regularisation (Karras et al. 2020, sec. 3.1): the penalty on one step in k,
          # scaled by k so that its average weight is unchanged; its second backward pass is
          # skipped on the other steps (a real branch under jit; under a vmap over seeds both run).
          # It is the update that takes the state to step k, 2k, ...: the loop logs metrics under
          # that 1-based number, so a log_every that is a multiple of k shows the penalty.
          (step + 1) % s.r1_every == 0, lambda: losses.r1_penalty(critic, real, coupled=True),
          lambda: jnp.zeros((), loss.dtype))
      loss = loss + 0.5 * s.r1_gamma * s.r1_every * r1
      aux["r1_penalty"] = r1  # lazy: 0 on the steps without it
    return loss, (d_state, aux)

  def d_update(d_params, d_opt, d_state, real, fake, key, lod, step, tx=d_tx):
    (loss, (d_state, aux)), grads = jax.value_and_grad(d_objective, has_aux=True)(
        d_params, d_state, real, fake, key, lod, step)
    updates, d_opt = tx.update(grads, d_opt, d_params)
    d_params = optax.apply_updates(d_params, updates)
    if s.weight_clip:
      d_params = jax.tree.map(lambda p: jnp.clip(p, -s.weight_clip, s.weight_clip), d_params)
    return d_params, d_opt, d_state, loss, optax.global_norm(grads), aux

  def update(params, opt_state, mutable, batch, key, step):
    g_params, d_params = params["generator"], params["discriminator"]
    g_state, d_state = mutable["generator"], mutable["discriminator"]
    g_opt, d_opt = opt_state["generator"], opt_state["discriminator"]
    lod = players.lod(step)
    reals = split_micro_batches(players.real_view(batch[field], lod), s.n_critic)
    micro = reals.shape[1]

    def critic_step(carry, inputs):
      d_params, d_opt, d_state = carry
      real, i = inputs
      k = jax.random.fold_in(key, i)
      z = players.latent(jax.random.fold_in(k, 0), micro)
      fake, _ = players.generate(g_params, g_state, z, jax.random.fold_in(k, 1), lod)
      d_params, d_opt, d_state, loss, gnorm, aux = d_update(
          d_params, d_opt, d_state, players.pack(real), players.pack(jax.lax.stop_gradient(fake)),
          jax.random.fold_in(k, 2), lod, step)
      return (d_params, d_opt, d_state), {"d_loss": loss, "d_grad_norm": gnorm, **aux}

    (d_params, d_opt, d_state), d_metrics = jax.lax.scan(
        critic_step, (d_params, d_opt, d_state), (reals, jnp.arange(s.n_critic)))
    d_metrics = jax.tree.map(jnp.mean, d_metrics)

    g_key = jax.random.fold_in(key, s.n_critic)
    z = players.latent(jax.random.fold_in(g_key, 0), micro)
    real_for_unroll = players.pack(reals[-1])

    def g_objective(g_params):
      fake, new_g_state = players.generate(g_params, g_state, z, jax.random.fold_in(g_key, 1), lod)
      packed = players.pack(fake)
      critic = d_params
      if s.unrolled_steps:
        tx = d_tx if unroll_tx is None else unroll_tx
        opt = d_opt if unroll_tx is None else unroll_tx.init(d_params)
        def unroll(carry, j):
          p, o, st = carry
          p, o, st, *_ = d_update(p, o, st, real_for_unroll, packed,
                                  jax.random.fold_in(g_key, 2 + j), lod, step, tx)
          return (p, o, st), None
        (critic, _, _), _ = jax.lax.scan(unroll, (d_params, opt, d_state),
                                         jnp.arange(s.unrolled_steps))
      logits, _ = players.discriminate(critic, d_state, packed, lod)
      return losses.generator_loss(s.objective, logits), new_g_state

    (g_loss, g_state), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_params)
    updates, g_opt = g_tx.update(g_grads, g_opt, g_params)
    g_params = optax.apply_updates(g_params, updates)
    g_norm = optax.global_norm(g_grads)

    metrics = {"loss": d_metrics["d_loss"] + g_loss, "g_loss": g_loss, "g_grad_norm": g_norm,
               "grad_norm": g_norm, "lr": lr_schedules[0](step), "d_lr": lr_schedules[1](step),
               **d_metrics}
    if not isinstance(lod, (int, float)):
      metrics["lod"] = jnp.asarray(lod, jnp.float32)
    return ({"generator": g_params, "discriminator": d_params},
            {"generator": g_opt, "discriminator": d_opt},
            dict(mutable, generator=g_state, discriminator=d_state), metrics)

  return update
