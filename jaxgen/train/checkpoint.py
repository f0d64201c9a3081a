"""Orbax checkpoints of a run: train state, data-iterator state and config, saved together per step.

Layout: WORKDIR/checkpoints/<step>/{state, data, config}. Saves are asynchronous; orbax writes into a
temporary directory and renames it when complete, so a process killed mid-save leaves the previous
checkpoints intact and the partial one is ignored (and cleaned up) on the next start.

Restoring uses an abstract target built from the config, so arrays come back with the right
structure and sharding. Before restoring, the checkpoint's array shapes are compared with the
target's and every mismatched entry is named.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxgen.errors import CheckpointError


def _path_str(path) -> str:
  parts = []
  for p in path:
    for attr in ("key", "name", "idx"):
      if hasattr(p, attr):
        parts.append(str(getattr(p, attr)))
        break
    else:
      parts.append(str(p))
  return "/".join(parts)


def _shape_table(tree) -> dict[str, tuple]:
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shape = getattr(leaf, "shape", None)
    out[_path_str(path)] = tuple(shape) if shape is not None else None
  return out


def describe_mismatch(saved, target) -> list[str]:
  """Entries whose presence or shape differs between a checkpoint's metadata and a target tree."""
  saved_t, target_t = _shape_table(saved), _shape_table(target)
  problems = []
  for k in sorted(set(saved_t) | set(target_t)):
    if k not in target_t:
      problems.append(f"{k}: in the checkpoint, not in the config's model")
    elif k not in saved_t:
      problems.append(f"{k}: in the config's model, not in the checkpoint")
    elif saved_t[k] != target_t[k] and not (saved_t[k] in ((), None) and target_t[k] in ((), None)):
      problems.append(f"{k}: checkpoint {saved_t[k]} vs config {target_t[k]}")
  return problems


class Checkpointer:
  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    # Handlers are given up front so a fresh process can read metadata before any save/restore.
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
                "config": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
    # The manager removes unfinished checkpoints of earlier runs on a background thread that only a
    # save waits for; a process that fails before its first save could exit while that thread still
    # runs, and it then dies with a traceback at interpreter shutdown. Wait for it here (a listing
    # of the checkpoint directory, quick).
    self._await_tmp_cleanup()

  def _await_tmp_cleanup(self) -> None:
    wait = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
    if wait is not None:
      wait()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, data_iterator, config_json: str, *, force: bool = False) -> bool:
    args = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(json.loads(config_json))}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

  def _corrupt(self, step: int, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"The checkpoint at step {step} in '{self.directory}' cannot be read "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). It may be corrupt. "
        f"Move '{self.directory / str(step)}' aside to resume from the previous checkpoint "
        f"(steps present: {self.all_steps()}), or use a new workdir.")

  def restore_config(self, step: int | None = None) -> dict:
    step = self.latest_step() if step is None else step
    try:
      return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    except Exception as e:  # orbax raises many types for missing/corrupt files
      raise self._corrupt(step, e) from e

  def restore(self, step: int, abstract_state, data_iterator=None) -> Any:
    """Restores the state into the abstract target (and the iterator in place)."""
    try:
      saved = self.manager.item_metadata(step)["state"]
    except Exception as e:
      raise self._corrupt(step, e) from e
    if saved is None:
      raise self._corrupt(step, ValueError("no metadata for the train state"))
    problems = describe_mismatch(saved, abstract_state)
    if problems:
      shown = "; ".join(problems[:12]) + (f"; and {len(problems) - 12} more" if len(problems) > 12 else "")
      raise CheckpointError(
          f"The checkpoint at step {step} in '{self.directory}' does not fit the config "
          f"({len(problems)} mismatched entries): {shown}. Use the config the run was started with "
          "(it is saved with each checkpoint), or start a new workdir.")
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:
      raise self._corrupt(step, e) from e
    return restored["state"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree, sharding) -> Any:
  """ShapeDtypeStructs of `tree` carrying `sharding` (the target for a restore)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)
