"""The training loop: one loop for every method.

Order of work per call: fetch `steps_per_call` batches, run them in one compiled call, bring the
metrics to the host, stop on a non-finite loss (before anything is saved), log, write sample grids,
checkpoint, and honour SIGTERM/SIGINT by saving and returning.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgen import config as config_lib
from jaxgen import images as images_lib
from jaxgen.data import train_dataset
from jaxgen.errors import ConfigError, NonFiniteLossError
from jaxgen.method import Method, build_method
from jaxgen.train import step as step_lib
from jaxgen.train.checkpoint import Checkpointer, abstract_like, describe_mismatch
from jaxgen.train.logging import MetricsLog
from jaxgen.train.optim import make_optimizer
from jaxgen.train.resume import BOOKKEEPING_KEYS, changed_keys, check_continuation
from jaxgen.train.state import TrainState, create_train_state

SAMPLE_KEY_SALT = 0x5A3D  # sample grids during training use fold_in(seed key, this)


@dataclasses.dataclass
class RunResult:
  final_step: int
  start_step: int
  stopped_by_signal: bool
  last_metrics: dict


def to_host(x) -> np.ndarray:
  """A replicated (possibly multi-process) array -> NumPy, from this process's own copy."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def validate(config: ml_collections.ConfigDict, device_count: int) -> None:
  config_lib.validate_common(config)
  from jaxgen.method import validate_method_config
  validate_method_config(config)
  t = config.train
  micro = t.batch_size // t.grad_accum_steps
  if micro % device_count:
    raise ConfigError(f"Config key 'train.batch_size': each micro-batch ({micro} = batch_size "
                      f"{t.batch_size} / grad_accum_steps {t.grad_accum_steps}) must split evenly "
                      f"over the {device_count} devices. Use a multiple of {device_count}.")


class Trainer:
  """Holds the pieces of a run; `run()` trains until `train.steps` or a signal."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path | None, *,
               progress: bool | None = None, devices=None, allow_config_change: bool = False):
    """workdir None: a trainer for its update and states only (jaxgen.train.sweep); run() needs one.
    allow_config_change: continue a workdir's checkpoint under a config it was not trained with
    (jaxgen.train.resume says which changes pass without it), with a warning naming the changes."""
    self.config = config
    self.allow_config_change = allow_config_change
    self.workdir = None if workdir is None else pathlib.Path(workdir)
    self.mesh = step_lib.make_mesh(devices)
    validate(config, self.mesh.size)
    self.method: Method = build_method(config)
    t = config.train
    self.is_main = jax.process_index() == 0
    self.progress = progress
    if self.method.update is not None:  # the method's own optimizer step (a GAN's two players)
      if t.grad_accum_steps != 1:
        raise ConfigError(f"Config key 'train.grad_accum_steps' must be 1 for method "
                          f"'{self.method.name}', whose step is its own.")
      self.optimizer = self.method.optimizer
      self.update = step_lib.build_method_update(self.method.update, ema_decay=t.ema_decay,
                                                 ema_warmup=t.get("ema_warmup", False),
                                                 post_update=self.method.post_update)
      return
    self.optimizer, self.lr_schedule = make_optimizer(config.optimizer, t.steps)
    self.update = step_lib.build_update(self.method.loss, self.optimizer, self.lr_schedule,
                                        ema_decay=t.ema_decay, ema_warmup=t.get("ema_warmup", False),
                                        grad_accum_steps=t.grad_accum_steps,
                                        post_update=self.method.post_update)

  # -- state -----------------------------------------------------------------------------------
  def _keys(self, seed=None):
    return jax.random.split(jax.random.PRNGKey(self.config.seed if seed is None else seed))

  def fresh_state(self, seed=None) -> TrainState:
    """The method's init as a train state for `seed` (default config.seed; may be traced), before
    any warm start. Not jitted."""
    params_key, run_key = self._keys(seed)
    return create_train_state(self.method.init(params_key), self.optimizer, run_key)

  def init_state(self) -> TrainState:
    """A fresh state: the method's init, then its warm start (trained variables) if it has one."""
    params_key, run_key = self._keys()
    replicated = step_lib.replicated(self.mesh)
    if self.method.warm_start is None:
      return jax.jit(self.fresh_state, out_shardings=replicated)()
    # Warm start: fresh variables on the host, some replaced by trained ones, then placed.
    fresh = jax.tree.map(np.asarray, jax.jit(self.method.init)(params_key))
    variables = self.method.warm_start(fresh)
    problems = describe_mismatch(variables, fresh)
    if problems:
      raise ConfigError(f"The warm start of method '{self.method.name}' does not fit the config's "
                        f"model: {'; '.join(problems[:8])}. Give the model section the run you "
                        "start from was trained with.")
    make = lambda v: create_train_state(v, self.optimizer, run_key)
    return jax.jit(make, out_shardings=replicated)(variables)

  def abstract_state(self) -> TrainState:
    return abstract_like(jax.eval_shape(self.fresh_state), step_lib.replicated(self.mesh))

  # -- data ------------------------------------------------------------------------------------
  def make_data_iterator(self):
    ds = train_dataset(self.config.data, seed=self.config.seed, global_batch=self.config.train.batch_size,
                       process_index=jax.process_index(), process_count=jax.process_count())
    return iter(ds)

  def next_batches(self, iterator) -> Any:
    """steps_per_call local batches stacked and assembled into one global array per entry."""
    k = self.config.train.steps_per_call
    local = [next(iterator) for _ in range(k)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *local)
    sharding = step_lib.batch_sharding(self.mesh)
    glob = lambda x: jax.make_array_from_process_local_data(
        sharding, x, (k, self.config.train.batch_size) + x.shape[2:])
    return jax.tree.map(glob, stacked)

  # -- sampling --------------------------------------------------------------------------------
  def sample_fn(self):
    if not hasattr(self, "_sample_fn"):
      num = self.config.train.get("sample_num", 64)
      self._sample_fn = jax.jit(lambda p, m, k: self.method.sample(p, m, k, num),
                                out_shardings=step_lib.replicated(self.mesh))
    return self._sample_fn

  def write_samples(self, state: TrainState, path: pathlib.Path, log: MetricsLog, step: int) -> None:
    key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), SAMPLE_KEY_SALT)
    samples = to_host(self.sample_fn()(state.ema_params, state.mutable, key))
    if self.is_main:
      images_lib.save_grid(samples, path)
      log.image("samples", images_lib.sample_image(samples), step)

  # -- the loop --------------------------------------------------------------------------------
  def _check_continuation(self, ckpt: Checkpointer, step: int) -> None:
    """Refuses (or, if allowed, warns about) a config the checkpoint at `step` was not trained with."""
    saved = ckpt.restore_config(step)
    new = json.loads(config_lib.to_json(self.config))
    where = str(self.workdir)
    if not self.allow_config_change:
      check_continuation(saved, new, step, where=where, bookkeeping=BOOKKEEPING_KEYS,
                         fix="pass --allow-config-change (Trainer(allow_config_change=True)) to "
                             "continue it under this config anyway")
      return
    changed = changed_keys(saved, new, bookkeeping=BOOKKEEPING_KEYS)
    if changed and self.is_main:
      print(f"Continuing the checkpoint at step {step} in '{where}' under a changed config "
            f"(--allow-config-change): {', '.join(changed)}.", file=sys.stderr)

  def run(self) -> RunResult:
    cfg, t = self.config, self.config.train
    if self.workdir is None:
      raise ValueError("Trainer.run() needs a workdir (this trainer was built without one).")
    self.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(self.workdir, max_to_keep=t.get("max_to_keep", 3),
                        async_save=t.get("async_checkpoint", True))
    try:
      iterator = self.make_data_iterator()
      start = ckpt.latest_step()
      if start is not None:
        self._check_continuation(ckpt, start)
        state = ckpt.restore(start, self.abstract_state(), iterator)
      else:
        start = 0
        state = self.init_state()
    except BaseException:
      ckpt.close()  # stop orbax's background threads before the error propagates
      raise
    config_json = config_lib.to_json(cfg)
    if self.is_main:
      (self.workdir / "config.json").write_text(json.dumps(json.loads(config_json), indent=2) + "\n")
    log = MetricsLog(self.workdir, resume_step=start, enabled=self.is_main)

    # The iterator state saved with a checkpoint must be the one after the batches of the steps
    # done, so batches are fetched at the top of each iteration, never ahead of a save (grain's
    # reader threads prefetch in the background). The step compiles on the first iteration.
    compiled = None

    stop = {"signal": None}
    def on_signal(signum, frame):
      stop["signal"] = signum
    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    bar = None
    if self.is_main and self.progress is not False:
      from tqdm import tqdm
      bar = tqdm(total=t.steps, initial=start, dynamic_ncols=True, disable=None if self.progress is None else False)
    step, last_saved, last = start, start if ckpt.latest_step() is not None else None, {}
    window_start, window_steps = time.perf_counter(), 0
    try:
      while step < t.steps and stop["signal"] is None:
        batches = self.next_batches(iterator)
        if compiled is None:
          compiled = step_lib.compile_train_step(self.update, self.mesh, state, batches)
        state, metrics = compiled(state, batches)
        metrics = {k: to_host(v) for k, v in metrics.items()}
        k = len(metrics["loss"])
        bad = np.flatnonzero(~np.isfinite(metrics["loss"]))
        if bad.size:
          first = step + int(bad[0]) + 1
          ckpt.wait()
          raise NonFiniteLossError(first, (
              f"The training loss became {metrics['loss'][bad[0]]} at step {first}. The run stopped "
              f"without saving that state; the last good checkpoint "
              f"({'step ' + str(last_saved) if last_saved is not None else 'none yet'}) is kept. Lower "
              "optimizer.lr, set optimizer.grad_clip, or check the data for NaN/inf values."))
        step += k
        window_steps += k
        for i in range(k):
          s = step - k + i + 1
          if s % t.log_every == 0 or s == t.steps:
            now = time.perf_counter()
            record = {"step": s, **{name: v[i].item() for name, v in metrics.items()},
                      "steps_per_sec": window_steps / max(now - window_start, 1e-9)}
            log.write(record)
            last = record
            window_start, window_steps = now, 0
        if bar is not None:
          bar.update(k)
          bar.set_postfix(loss=f"{metrics['loss'][-1]:.4f}")
        if t.get("sample_every", 0) and step % t.sample_every == 0:
          self.write_samples(state, self.workdir / "samples" / f"step_{step:07d}.png", log, step)
        if step % t.checkpoint_every == 0 or step == t.steps:
          ckpt.save(step, state, iterator, config_json)
          last_saved = step
      if stop["signal"] is not None and last_saved != step:
        ckpt.save(step, state, iterator, config_json, force=True)
        last_saved = step
      if step >= t.steps and t.get("sample_every", 0):
        self.write_samples(state, self.workdir / "samples.png", log, step)
    finally:
      for s, h in old_handlers.items():
        signal.signal(s, h)
      if bar is not None:
        bar.close()
      ckpt.close()
      log.close()
    self.state = state
    return RunResult(final_step=step, start_step=start, stopped_by_signal=stop["signal"] is not None,
                     last_metrics=last)


def train(config: ml_collections.ConfigDict, workdir, **kwargs) -> RunResult:
  """Trains (or continues) the run in workdir; kwargs go to Trainer."""
  return Trainer(config, workdir, **kwargs).run()
