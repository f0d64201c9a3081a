"""Optimizer and learning-rate schedule from the `optimizer` config section."""

from __future__ import annotations

import ml_collections
import optax

from jaxgen.errors import ConfigError


def make_lr_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr` over `warmup_steps`, then constant, cosine or linear decay to
  `lr * final_lr_frac`.

  The decay spans every step after the warmup, or with `decay_steps` > 0 only the last
  `decay_steps` steps, the rate held at `lr` until then (warmup-stable-decay: Hu et al. 2024,
  Hagele et al. 2024). Such a run equals the constant-rate run up to the decay's start, so a
  "cooldown" can branch from any checkpoint of a constant-rate run and be compared against it.
  """
  warmup = opt.get("warmup_steps", 0)
  kind = opt.get("schedule", "constant")
  decay_steps = opt.get("decay_steps", 0) or 0
  if kind not in ("constant", "cosine", "linear"):
    raise ConfigError(f"Config key 'optimizer.schedule' must be constant, cosine or linear, not '{kind}'.")
  if decay_steps < 0 or (kind != "constant" and decay_steps > max(total_steps - warmup, 0)):
    raise ConfigError(f"Config key 'optimizer.decay_steps' must be between 0 and train.steps - "
                      f"warmup_steps ({max(total_steps - warmup, 0)}), got {decay_steps}. Use 0 to "
                      "decay over every step after the warmup.")
  span = decay_steps if decay_steps > 0 else max(total_steps - warmup, 1)
  final_frac = opt.get("final_lr_frac", 0.0)
  if kind == "constant":
    after = optax.constant_schedule(opt.lr)
  elif kind == "cosine":
    after = optax.cosine_decay_schedule(opt.lr, span, final_frac)
  else:
    after = optax.linear_schedule(opt.lr, opt.lr * final_frac, span)
  pieces, boundaries = [], []
  if warmup > 0:
    pieces, boundaries = [optax.linear_schedule(0.0, opt.lr, warmup)], [warmup]
  if kind != "constant" and decay_steps > 0 and total_steps - decay_steps > warmup:
    pieces.append(optax.constant_schedule(opt.lr))
    boundaries.append(total_steps - decay_steps)
  if not pieces:
    return after
  return optax.join_schedules(pieces + [after], boundaries)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int, updates_per_step: int = 1
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and its learning-rate schedule over training steps. A player that updates
  `updates_per_step` times per training step (a GAN's critic with n_critic > 1) counts its updates
  that much faster than the steps; each of its updates takes the rate of the step it belongs to, so
  the schedule's warmup and decay fall on the same training steps for both players."""
  if not opt.lr > 0:
    raise ConfigError(f"Config key 'optimizer.lr' must be positive, got {opt.lr}.")
  per_step = make_lr_schedule(opt, total_steps)
  schedule = per_step if updates_per_step == 1 else (lambda count: per_step(count // updates_per_step))
  name = opt.get("name", "adam")
  # eps_root (inside Adam's square root) keeps the update differentiable where a second moment
  # is 0: needed by steps that differentiate through an update (unrolled GANs).
  eps_root = opt.get("eps_root", 0.0)
  if name == "adam":
    core = optax.adam(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), eps=opt.get("eps", 1e-8),
                      eps_root=eps_root)
  elif name == "adamw":
    core = optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999),
                       eps=opt.get("eps", 1e-8), eps_root=eps_root,
                       weight_decay=opt.get("weight_decay", 0.0))
  elif name == "sgd":
    core = optax.sgd(schedule, momentum=opt.get("momentum", 0.9) or None)
  else:
    raise ConfigError(f"Config key 'optimizer.name' must be adam, adamw or sgd, not '{name}'.")
  clip = opt.get("grad_clip", 0.0)
  if clip and clip > 0:
    return optax.chain(optax.clip_by_global_norm(clip), core), per_step
  return core, per_step
