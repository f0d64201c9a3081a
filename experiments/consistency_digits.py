"""Consistency distillation (Song et al. 2023) on scikit-learn's 8x8 digits from a trained DDPM, with
the data, U-Net, optimizer and training settings of experiments/ddpm_digits.py.

The CM paper's CD settings where they apply: N = 18 Karras levels (rho 7), Heun teacher steps,
target EMA mu = 0.95, uniform weighting and level sampling; squared L2 instead of LPIPS (no
pretrained perceptual network here). sigma_min is 0.01 rather than 0.002: a discrete-time DDPM
teacher is defined only down to its smallest noise level (0.0064 for the cosine schedule).
  jaxgen train --config experiments/consistency_digits.py --workdir runs/cd \
      --config.consistency.teacher=runs/ddpm_digits_cosine
Consistency training (iCT) instead: --config.consistency.mode=training with the iCT keys
(experiments/fewstep.py, group digits, lists them).
"""

import pathlib

import ml_collections

from jaxgen.config import load_config_file
from jaxgen.consistency.method import consistency_config, sample_config

BASE = pathlib.Path(__file__).resolve().parent / "ddpm_digits.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(BASE)  # its data, model, optimizer and train sections
  del c["diffusion"]
  c.method = "consistency"
  c.consistency = consistency_config(
      mode="distillation", teacher="", solver="heun", sigma_min=0.01, sigma_max=80.0,
      sigma_data=0.5, curriculum="fixed", num_levels=18, distance="l2", weighting="uniform",
      level_sampling="uniform", target_ema=0.95)
  c.sample = sample_config(steps=1, clip_x0=True)
  return c
