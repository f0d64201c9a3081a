"""Optimizer and learning-rate schedule from the `optimizer` config section."""

from __future__ import annotations

import ml_collections
import optax

from jaxgen.errors import ConfigError


def make_lr_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr` over `warmup_steps`, then constant, cosine or linear decay."""
  warmup = opt.get("warmup_steps", 0)
  kind = opt.get("schedule", "constant")
  if kind == "constant":
    after = optax.constant_schedule(opt.lr)
  elif kind == "cosine":
    after = optax.cosine_decay_schedule(opt.lr, max(total_steps - warmup, 1), opt.get("final_lr_frac", 0.0))
  elif kind == "linear":
    after = optax.linear_schedule(opt.lr, opt.lr * opt.get("final_lr_frac", 0.0), max(total_steps - warmup, 1))
  else:
    raise ConfigError(f"Config key 'optimizer.schedule' must be constant, cosine or linear, not '{kind}'.")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, opt.lr, warmup), after], [warmup])


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  if not opt.lr > 0:
    raise ConfigError(f"Config key 'optimizer.lr' must be positive, got {opt.lr}.")
  schedule = make_lr_schedule(opt, total_steps)
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
    return optax.chain(optax.clip_by_global_norm(clip), core), schedule
  return core, schedule
