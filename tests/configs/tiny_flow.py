"""A flow model on the ring of 8 Gaussians small enough to train in seconds (tests only)."""

import pathlib

import ml_collections

from jaxgen.config import load_config_file

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "flow_toy2d.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(EXPERIMENT)
  c.data.num_examples = 2000
  c.data.num_threads = 2
  c.model.hidden = 32
  c.model.depth = 2
  c.optimizer.warmup_steps = 2
  c.train.steps = 20
  c.train.batch_size = 64
  c.train.steps_per_call = 10
  c.train.log_every = 10
  c.train.checkpoint_every = 20
  c.train.sample_every = 0
  return c
