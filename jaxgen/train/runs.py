"""Finished (or running) training runs as inputs: a workdir's config, checkpoint and parameters.

Used by `jaxgen sample / eval`, and by methods that start from or distil another run (reflow,
few-step distillation, consistency distillation)."""

from __future__ import annotations

import json
import pathlib

from jaxgen.errors import CheckpointError


def load_run(workdir: str):
  """(config, checkpointer, latest step) of a workdir with checkpoints."""
  from jaxgen import config as config_lib
  from jaxgen.train.checkpoint import Checkpointer
  path = pathlib.Path(workdir)
  if not (path / "checkpoints").is_dir():
    raise CheckpointError(f"'{workdir}' has no checkpoints. Train first: jaxgen train --config "
                          f"FILE --workdir {workdir}.")
  ckpt = Checkpointer(path, async_save=False)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise CheckpointError(f"'{workdir}/checkpoints' holds no complete checkpoint. Train (or resume) "
                          "until one is saved.")
  config = config_lib.from_json(json.dumps(ckpt.restore_config(step)))
  return config, ckpt, step


def restore_run(workdir: str, which_params: str = "ema", devices=None):
  """(trainer, state, params, step) of a workdir's latest checkpoint; params are the EMA or the
  online ones (`which_params`: ema | online). The trainer's config is the checkpoint's."""
  from jaxgen.train.loop import Trainer
  if which_params not in ("ema", "online"):
    raise ValueError(f"which_params must be ema or online, not '{which_params}'")
  config, ckpt, step = load_run(workdir)
  try:
    trainer = Trainer(config, workdir, progress=False, devices=devices)
    state = ckpt.restore(step, trainer.abstract_state())
  finally:
    ckpt.close()
  return trainer, state, state.ema_params if which_params == "ema" else state.params, step


def load_params(workdir: str, which_params: str = "ema"):
  """Host (NumPy) copies of a trained run's ema or online parameters: what a run that starts
  from it (reflow, distillation) or holds it (a frozen teacher) takes."""
  import jax
  import numpy as np
  _, _, params, _ = restore_run(workdir, which_params)
  return jax.tree.map(np.asarray, params)
