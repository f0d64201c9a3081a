"""A DDPM on the ring of 8 Gaussians small enough to train in seconds (tests only)."""

import importlib.util
import pathlib

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "ddpm_toy2d", pathlib.Path(__file__).resolve().parents[2] / "experiments" / "ddpm_toy2d.py")
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config() -> ml_collections.ConfigDict:
  c = _base.get_config()
  c.data.num_examples = 2000
  c.data.num_threads = 2
  c.model.hidden = 32
  c.model.depth = 2
  c.diffusion.num_timesteps = 50
  c.diffusion.beta_end = 0.2
  c.optimizer.warmup_steps = 2
  c.train.steps = 20
  c.train.batch_size = 64
  c.train.steps_per_call = 10
  c.train.log_every = 10
  c.train.checkpoint_every = 20
  c.train.sample_every = 0
  return c
