"""Reflow (Liu et al. 2022, Algorithm 1): couplings (Z_0, Z_1) from a trained flow's ODE, written
as a dataset (`jaxgen.data.couplings`) the next rectified flow trains on; and the straightness that
reflow reduces.

Determinism: shard i's noise (and labels) come from fold_in(PRNGKey(seed), i), drawn as one global
array and sampled under jit with the batch split over the run's device mesh, so the couplings do
not depend on the device count, and a killed writer resumes at the first missing shard with the
same numbers.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data import couplings
from jaxgen.errors import ConfigError
from jaxgen.flow import rectified
from jaxgen.nn import backbone
from jaxgen.samplers import adapters, grids
from jaxgen.train import step as step_lib


def write_couplings(workdir: str, out: str, num: int, *, sampler: str | None = None,
                    steps: int | None = None, guidance: float | None = None, seed: int = 0,
                    shard_size: int = 0, which_params: str = "ema", devices=None,
                    log=None, stop_after: int | None = None) -> dict:
  """Writes `num` couplings of the rectified flow in `workdir` to `out` (resuming if it exists).
  stop_after: write at most this many shards in this call (for tests of resumption)."""
  from jaxgen.train.runs import restore_run
  trainer, state, params, step = restore_run(workdir, which_params, devices=devices)
  config, method, mesh = trainer.config, trainer.method, trainer.mesh
  if method.name != "rectified_flow":
    raise ConfigError(f"jaxgen reflow needs a rectified-flow run; '{workdir}' trained "
                      f"'{method.name}'.")
  if num < 1:
    raise ConfigError(f"--num must be >= 1, got {num}.")
  shape = backbone.data_shape(config)
  field = backbone.batch_field(config)
  shard_size = shard_size or (1000 if field == "point" else 250)
  if shard_size % mesh.size:
    raise ConfigError(f"--shard-size {shard_size} must be a multiple of the {mesh.size} devices.")
  sampler = sampler or config.sample.sampler
  steps = steps or config.sample.steps
  num_classes = config.model.get("num_classes", 0)
  meta = {"field": field, "shape": list(shape), "num": int(num), "shard_size": int(shard_size),
          "labels": bool(num_classes),
          "source": {"workdir": str(pathlib.Path(workdir).resolve()), "step": int(step),
                     "params": which_params, "sampler": sampler, "steps": int(steps),
                     "guidance": guidance, "seed": int(seed),
                     "data": couplings.original_data(config.data).to_dict()}}
  missing = couplings.start_writing(out, meta)

  rows = step_lib.batch_sharding(mesh, stacked=False)

  def generate(p, key):
    noise = jax.random.normal(key, (shard_size,) + shape, jnp.float32)
    noise = jax.lax.with_sharding_constraint(noise, rows)
    labels = None
    if num_classes:
      labels = jax.random.randint(jax.random.fold_in(key, 1), (shard_size,), 0, num_classes)
    data = method.sample(p, {}, key, shard_size, sampler=sampler, steps=steps, guidance=guidance,
                         labels=labels, noise=noise)
    return noise, data, labels

  fn = jax.jit(generate, out_shardings=(rows, rows, None if not num_classes else rows))
  root = jax.random.PRNGKey(seed)
  started, written = time.perf_counter(), 0
  for index in missing[:stop_after] if stop_after is not None else missing:
    noise, data, labels = fn(params, jax.random.fold_in(root, index))
    n = min(shard_size, num - index * shard_size)
    take = lambda a: None if a is None else np.asarray(a)[:n]
    couplings.write_shard(out, index, take(noise), take(data), take(labels))
    written += 1
    if log:
      log(f"shard {index + 1}/{couplings.num_shards(num, shard_size)} written "
          f"({time.perf_counter() - started:.1f}s)")
  return {"out": str(out), "num": num, "shards_written": written,
          "shards_total": couplings.num_shards(num, shard_size),
          "already_present": couplings.num_shards(num, shard_size) - len(missing),
          "seconds": round(time.perf_counter() - started, 2), "sampler": sampler, "steps": steps}


def measure_straightness(method, params, config, *, num: int, batch: int, steps: int = 100,
                         seed: int = 0) -> dict:
  """Mean straightness (and its standard error) of a trained flow along Euler paths of `steps`
  uniform intervals from `num` N(0, I) draws; a method with only a denoiser (a diffusion model) is
  measured on its probability-flow ODE through the equivalent velocity, from t = 1e-3."""
  if method.denoiser is None:
    raise ConfigError(f"Method '{method.name}' has no denoiser; straightness applies to flows "
                      "and diffusion models.")
  shape = backbone.data_shape(config)
  num_classes = config.model.get("num_classes", 0)
  labels = backbone.default_labels(batch, num_classes) if num_classes else None
  if method.velocity is not None:
    velocity, ts = method.velocity(params, {}, labels), grids.flow_times(steps)
  else:
    # A denoiser's velocity is undefined at t = 0 (infinite sigma): start the paths at t = 1e-3.
    velocity = adapters.denoiser_velocity(method.denoiser(params, {}, labels))
    ts = grids.flow_times(steps, t_min=1e-3)
  fn = jax.jit(lambda noise: rectified.straightness(velocity, noise, ts)[1])
  root = jax.random.PRNGKey(seed)
  values = [np.asarray(fn(jax.random.normal(jax.random.fold_in(root, i), (batch,) + shape)))
            for i in range(-(-num // batch))]
  s = np.concatenate(values)[:num]
  return {"straightness": float(s.mean()),
          "straightness_stderr": float(s.std(ddof=1) / np.sqrt(len(s))), "straightness_steps": steps}
