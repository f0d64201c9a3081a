"""Several seeds of one config trained at once: the engine's update `vmap`ped over seeds in one
compiled program.

A small model (a 2D GAN, a tiny image model) leaves most of a device idle, and a benchmark over
seeds then pays each run's compile, input pipeline and dispatch separately. Here seed s's state is
exactly the one `Trainer` builds for `config.seed = s`, every seed takes the same update
(`Trainer.update`: the method's loss or its own two-player step, EMA, post-update hook), and the
seeds advance together, `steps_per_call` steps per call in a `lax.scan`.

Devices: the seed axis is split over a 1-D mesh (axis `seeds`), each device holding whole seeds
and the training data, so the seeds train in parallel with no communication. The mesh takes as
many of the given devices (default: all) as divide the number of seeds (8 seeds on 8 devices: one
each; 5 seeds on 8 devices: 5 of them; 6 on 4: 3). A seed's numbers do not depend on the device
count, so a checkpoint written on one device count continues on another.

Data: the training split is held in memory (`eval_arrays`: the records `jaxgen train` reads,
preprocessed the same way) and each step draws its batch uniformly with replacement from it, with
the key fold_in(fold_in(state.key, DATA_SALT), step). So a seed's run differs from `jaxgen train
--config.seed=s` only in the order it sees the data (grain's shuffled epochs there). There are no
logs: this is for sweeps judged by measurements of their states.

With a workdir the stacked states are saved (orbax, WORKDIR/checkpoints/<step>) every
`checkpoint_every` steps and at the end, and a sweep built on that workdir continues from the latest
checkpoint: a long sweep can run in pieces, and a finished one can be extended to more steps. The
checkpoint keeps the seeds and the config; resuming with other seeds or another config is refused,
since the states would not be the run the config describes (jaxgen.train.resume, as for `jaxgen
train`: train.steps, bookkeeping, and learning-rate schedules that agree on the steps already taken
pass, so a cooldown (`optimizer.decay_steps`) can branch from a constant-rate checkpoint).
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxgen import config as config_lib
from jaxgen.data import eval_arrays
from jaxgen.errors import CheckpointError, ConfigError
from jaxgen.train import step as step_lib
from jaxgen.train.checkpoint import Checkpointer, abstract_like
from jaxgen.train.loop import Trainer
from jaxgen.train.resume import BOOKKEEPING_KEYS, check_continuation
from jaxgen.train.state import TrainState

DATA_SALT = 0x5EED  # batch indices use fold_in(fold_in(state.key, DATA_SALT), step)
SEED_AXIS = "seeds"


def seed_devices(num_seeds: int, devices: Sequence) -> list:
  """The first n of `devices`, n the largest count that divides the seeds evenly (whole seeds per
  device, the same number on each)."""
  n = max(k for k in range(1, len(devices) + 1) if num_seeds % k == 0)
  return list(devices[:n])


class SeedSweep:
  """`SeedSweep(config, seeds).run(steps)` -> the final states, stacked on a leading seed axis.
  With `workdir`, resumes from the latest checkpoint there and `run` saves into it."""

  def __init__(self, config: ml_collections.ConfigDict, seeds: Sequence[int], *, devices=None,
               workdir=None):
    if not seeds:
      raise ConfigError("A seed sweep needs at least one seed.")
    self.config = config
    self.seeds = [int(s) for s in seeds]
    devices = list(devices or jax.devices())
    # The seeds, not the batch, are the parallel axis: the trainer (its update and states) is a
    # one-device one, and the sweep's programs split their leading seed axis over `self.mesh`.
    self.trainer = Trainer(config, workdir=None, devices=devices[:1])
    used = seed_devices(len(self.seeds), devices)
    self.mesh = jax.make_mesh((len(used),), (SEED_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                              devices=used)
    self.seed_sharding = NamedSharding(self.mesh, P(SEED_AXIS))
    if self.trainer.method.warm_start is not None:
      raise ConfigError(f"Method '{self.trainer.method.name}' starts from trained weights; a seed "
                        "sweep starts every seed from the method's own init. Train with `jaxgen train`.")
    self.data = {k: jax.device_put(np.asarray(v), step_lib.replicated(self.mesh))
                 for k, v in eval_arrays(config.data, config.data.get("split", "train")).items()}
    self.num_examples = len(next(iter(self.data.values())))
    self.states = jax.jit(jax.vmap(self.trainer.fresh_state), out_shardings=self.seed_sharding)(
        jnp.asarray(self.seeds))
    self._calls: dict[int, Callable] = {}
    self.checkpointer = None
    if workdir is not None:
      self.checkpointer = Checkpointer(workdir, max_to_keep=1, async_save=False)
      self._resume()

  def _identity(self) -> dict:
    """What the checkpoint records to be continued: the seeds, the config and its length."""
    config = json.loads(config_lib.to_json(self.config))
    return {"seeds": self.seeds, "config": config, "train_steps": int(self.config.train.steps)}

  def _resume(self) -> None:
    step = self.checkpointer.latest_step()
    if step is None:
      return
    saved = self.checkpointer.restore_config(step)
    expected = self._identity()
    where = self.checkpointer.directory
    if saved.get("seeds") != expected["seeds"]:
      raise CheckpointError(f"The sweep checkpoint in '{where}' holds seeds {saved.get('seeds')}, "
                            f"not {expected['seeds']}. Sweep those seeds, or use a new workdir.")
    saved_config = json.loads(json.dumps(saved.get("config", {})))
    # Checkpoints written before the length was recorded kept a config without train.steps; they
    # are continued as if the length were the new one, which is exact for schedules that do not
    # depend on it.
    saved_config.setdefault("train", {})["steps"] = saved.get("train_steps", expected["train_steps"])
    check_continuation(saved_config, expected["config"], step, where=str(where), what="sweep checkpoint",
                       bookkeeping=BOOKKEEPING_KEYS)
    self.states = self.checkpointer.restore(step, abstract_like(self.states, self.seed_sharding))

  def save(self) -> None:
    """Checkpoints the stacked states at their step (needs a workdir)."""
    if self.checkpointer is None:
      raise ValueError("This sweep has no workdir to save into.")
    step = int(self.step()[0])
    if self.checkpointer.latest_step() != step:
      self.checkpointer.save(step, self.states, None, json.dumps(self._identity()), force=True)
      self.checkpointer.wait()

  @property
  def method(self):
    return self.trainer.method

  def _batch(self, state: TrainState, data):
    key = jax.random.fold_in(jax.random.fold_in(state.key, DATA_SALT), state.step)
    rows = jax.random.randint(key, (self.config.train.batch_size,), 0, self.num_examples)
    return {k: v[rows] for k, v in data.items()}

  def _call(self, k: int) -> Callable:
    """k steps of every seed: (states, data) -> (states, metrics[seed, k])."""
    if k not in self._calls:
      def one_seed(state, data):
        return jax.lax.scan(lambda st, _: self.trainer.update(st, self._batch(st, data)), state,
                            None, length=k)
      # The data is an argument shared by every seed (a closed-over array would be baked into the
      # program as a constant).
      self._calls[k] = jax.jit(jax.vmap(one_seed, in_axes=(0, None)), donate_argnums=(0,),
                               out_shardings=self.seed_sharding)
    return self._calls[k]

  def step(self) -> np.ndarray:
    """The number of steps each seed has taken."""
    return np.asarray(self.states.step)

  def run(self, steps: int | None = None, *, steps_per_call: int | None = None,
          every: int = 0, callback: Callable | None = None,
          checkpoint_every: int = 0) -> TrainState:
    """Advance every seed to `steps` (default train.steps). callback(step, states, metrics) runs
    every `every` steps (and at the end) with the metrics of the last call, [seed, k] arrays. With
    a workdir the states are saved every `checkpoint_every` steps (after the callback) and at the
    end."""
    steps = self.config.train.steps if steps is None else steps
    k = steps_per_call or self.config.train.steps_per_call
    done = int(self.step()[0])
    # A call stops at the next measurement or checkpoint.
    until_next = lambda n, period: (period - n % period) if period else k
    while done < steps:
      n = min(k, steps - done, until_next(done, every), until_next(done, checkpoint_every))
      self.states, metrics = self._call(n)(self.states, self.data)
      done += n
      if callback is not None and ((every and done % every == 0) or done == steps):
        callback(done, self.states, jax.tree.map(np.asarray, metrics))
      if self.checkpointer is not None and ((checkpoint_every and done % checkpoint_every == 0)
                                            or done == steps):
        self.save()
    return self.states

  def seed_view(self, i: int) -> TrainState:
    """Seed i's state (index into `seeds`)."""
    return jax.tree.map(lambda x: x[i], self.states)

  def close(self) -> None:
    if self.checkpointer is not None:
      self.checkpointer.close()
