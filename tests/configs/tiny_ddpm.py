"""A DDPM small enough that a subprocess run compiles and trains in seconds (tests only)."""

import pathlib

import ml_collections

from jaxgen.config import load_config_file

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "ddpm_digits.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(EXPERIMENT)
  c.data.image_size = 8
  c.data.num_threads = 2
  c.model.ch = 8
  # One resolution (with attention): the compile of a two-level U-Net took most of each
  # subprocess run's time (106 s against 45 s for a 12-step run on 2 busy cores).
  c.model.ch_mult = (1,)
  c.model.attn_resolutions = (8,)
  c.model.num_groups = 4
  c.diffusion.num_timesteps = 50
  c.diffusion.beta_end = 0.2
  c.optimizer.warmup_steps = 2
  c.train.steps = 12
  c.train.batch_size = 16
  c.train.steps_per_call = 2
  c.train.log_every = 2
  c.train.checkpoint_every = 4
  c.train.sample_every = 0
  c.train.sample_num = 4
  return c
