"""1-rectified flow (Liu et al. 2022) on scikit-learn's 8x8 digits, with the data, U-Net, optimizer and
training settings of experiments/ddpm_digits.py: about five minutes on 2 CPU cores.

The few-step workflow (experiments/fewstep.py runs all of it and the evaluation):
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf1
  jaxgen reflow --workdir runs/rf1 --out runs/rf1_couplings --num 10000 --steps 100
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf2 --config.data.name=couplings \
      --config.data.path=runs/rf1_couplings --config.flow.init_from=runs/rf1
  jaxgen reflow --workdir runs/rf2 --out runs/rf2_couplings --num 10000 --steps 100
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf2_distilled \
      --config.data.name=couplings --config.data.path=runs/rf2_couplings \
      --config.flow.init_from=runs/rf2 --config.flow.time_sampling=discrete \
      --config.flow.discrete_steps=1 --config.sample.steps=1
  jaxgen sample --workdir runs/rf2_distilled --steps 1 --out one_step.png
"""

import pathlib

import ml_collections

from jaxgen.config import load_config_file
from jaxgen.flow.method import flow_config, sample_config

BASE = pathlib.Path(__file__).resolve().parent / "ddpm_digits.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(BASE)  # its data, model, optimizer and train sections
  del c["diffusion"]
  c.method = "rectified_flow"
  c.flow = flow_config(time_sampling="uniform")
  c.sample = sample_config(sampler="flow_euler", steps=100)
  return c
