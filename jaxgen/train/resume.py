"""Whether a checkpoint may be continued under a config.

A checkpoint keeps the config it was trained with. Continuing it under another config gives states
that no config describes (a run is reproduced from its config and key), so a changed config is
refused, naming the keys that differ. Three kinds of change are let through:
- train.steps: a run extended, or stopped early;
- the learning-rate schedules of the optimizer sections, where the new schedule gives the same rate
  as the saved one at every step already taken: a cooldown (`optimizer.decay_steps`) branched from a
  constant-rate run. Lengthening a run whose decay spans the whole run moves rates already used,
  and is refused naming the first such step;
- keys the caller names as bookkeeping, which the trained states do not depend on
  (BOOKKEEPING_KEYS: how often to log or checkpoint, how to sample).
Both continuations in the library check this: `jaxgen train` (jaxgen.train.loop) and seed sweeps
(jaxgen.train.sweep).
"""

from __future__ import annotations

import json
from typing import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.errors import CheckpointError
from jaxgen.train.optim import make_lr_schedule

# Optimizer sections whose learning-rate schedule may change on resume, and the keys that set it.
OPTIMIZER_SECTIONS = ("optimizer", "d_optimizer")
SCHEDULE_KEYS = ("lr", "warmup_steps", "schedule", "final_lr_frac", "decay_steps")
# Config keys the trained states do not depend on: how often to log, checkpoint and draw sample
# grids, and the `sample` section (used only when sampling).
BOOKKEEPING_KEYS = ("train.log_every", "train.checkpoint_every", "train.max_to_keep",
                    "train.async_checkpoint", "train.sample_every", "train.sample_num", "sample")


def check_continuation(saved: dict, new: dict, step: int, *, where: str, what: str = "checkpoint",
                       bookkeeping: Sequence[str] = (), fix: str = "") -> None:
  """Raises CheckpointError unless the config `new` may continue the checkpoint at `step` that was
  trained under `saved` (both plain dicts of a config; their train.steps set each schedule's length).
  `bookkeeping`: dotted keys that may differ freely. `fix`: another way out, for the message."""
  fix = fix or "use a new workdir"
  diff = changed_keys(saved, new, bookkeeping=bookkeeping, schedules=True)
  if diff:
    raise CheckpointError(f"The {what} in '{where}' was trained with another config (differs in "
                          f"{', '.join(diff[:8])}). Use the config it was started with, or {fix}.")
  for section in OPTIMIZER_SECTIONS:
    if section in saved or section in new:
      _check_schedule_agrees(section, saved, new, step, where, what, fix)


def changed_keys(saved: dict, new: dict, *, bookkeeping: Sequence[str] = (),
                 schedules: bool = False) -> list[str]:
  """The dotted keys, sorted, in which two configs differ, less train.steps and the bookkeeping
  keys (and, with schedules=True, the optimizer sections' schedule keys)."""
  skip = ("train.steps",) + tuple(bookkeeping)
  return sorted(differences(without_keys(saved, skip, schedules=schedules),
                            without_keys(new, skip, schedules=schedules)))


def differences(a, b, prefix: str = "") -> list[str]:
  """Dotted keys whose values differ between two nested dicts."""
  if not (isinstance(a, dict) and isinstance(b, dict)):
    return [prefix.rstrip(".")] if a != b else []
  out = []
  for key in set(a) | set(b):
    out += differences(a.get(key), b.get(key), f"{prefix}{key}.")
  return out


def without_keys(config: dict, keys: Sequence[str], *, schedules: bool = False) -> dict:
  """A copy of the config less the dotted keys (and the optimizer schedules if asked)."""
  out = json.loads(json.dumps(config))
  for dotted in keys:
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
      node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.pop(leaf, None)
  if schedules:
    for section in OPTIMIZER_SECTIONS:
      for key in SCHEDULE_KEYS:
        (out.get(section) or {}).pop(key, None)
  return out


def _steps(config: dict) -> int:
  return int((config.get("train") or {}).get("steps", 0))


def _check_schedule_agrees(section: str, saved: dict, new: dict, step: int, where: str, what: str,
                           fix: str) -> None:
  """Refuses a schedule that gives another rate than the saved one at some step in [0, step)."""
  if saved.get(section) is None or new.get(section) is None:
    raise CheckpointError(f"The {what} in '{where}' was trained "
                          f"{'without' if saved.get(section) is None else 'with'} a '{section}' "
                          f"section, this config has the opposite. Use the config it was started "
                          f"with, or {fix}.")
  taken = jnp.arange(step)
  # (A constant schedule returns one value whatever the steps.)
  before = np.broadcast_to(make_lr_schedule(ml_collections.ConfigDict(saved[section]), _steps(saved))(taken), (step,))
  after = np.broadcast_to(make_lr_schedule(ml_collections.ConfigDict(new[section]), _steps(new))(taken), (step,))
  bad = np.flatnonzero(~np.isclose(before, after, rtol=1e-6, atol=0.0))
  if bad.size:
    k = int(bad[0])
    raise CheckpointError(
        f"The {what} in '{where}' is at step {step}, but this config's '{section}' "
        f"learning rate differs from the one it was trained with at step {k} ({after[k]:.6g} "
        f"instead of {before[k]:.6g}). A schedule may change only after the steps already taken: "
        f"keep '{section}' as it was (a decay over the whole run also moves when train.steps "
        f"changes), let the decay start at or after step {step} ('{section}.decay_steps' <= "
        f"train.steps - {step}), or {fix}.")
