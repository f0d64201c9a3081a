"""1-rectified flow on a 2D Gaussian mixture (PacGAN's ring of 8 modes by default): about a minute
on 2 cores. Evaluate with `jaxgen eval --workdir DIR --metric modes --sampler flow_euler --steps 1`.

Reflow (2-rectified flow) trains the same config on the couplings of this run:
  jaxgen reflow --workdir RUN --out COUPLINGS --num 50000
  jaxgen train --config experiments/flow_toy2d.py --workdir RUN2 \
      --config.data.name=couplings --config.data.path=COUPLINGS --config.flow.init_from=RUN
"""

import pathlib

import ml_collections

from jaxgen.config import load_config_file
from jaxgen.flow.method import flow_config, sample_config

BASE = pathlib.Path(__file__).resolve().parent / "ddpm_toy2d.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(BASE)  # its data, model, optimizer and train sections
  del c["diffusion"]
  c.method = "rectified_flow"
  c.flow = flow_config(time_sampling="uniform")
  c.sample = sample_config(sampler="flow_euler", steps=100)
  return c
