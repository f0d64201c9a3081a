"""A flow model on the ring of 8 Gaussians small enough to train in seconds (tests only): the
tiny DDPM's data, MLP and training settings with experiments/flow_toy2d.py's method sections."""

import pathlib

import ml_collections

from jaxgen.config import load_config_file

HERE = pathlib.Path(__file__).resolve().parent
EXPERIMENT = HERE.parents[1] / "experiments" / "flow_toy2d.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(HERE / "tiny_toy2d.py")
  method = load_config_file(EXPERIMENT)
  del c["diffusion"]
  c.method = method.method
  c["flow"] = method["flow"]
  c.sample = method.sample
  return c
