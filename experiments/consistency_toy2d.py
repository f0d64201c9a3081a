"""Consistency training (iCT recipe: pseudo-Huber, lognormal levels, curriculum 10 -> 1280, no EMA
target) on a 2D Gaussian mixture (PacGAN's ring of 8 modes by default).

Consistency distillation from a trained DDPM (experiments/ddpm_toy2d.py) instead:
  --config.consistency.mode=distillation --config.consistency.teacher=RUN \
  --config.consistency.sigma_min=0.01 (the teacher's smallest noise level: 0.01 for DDPM's linear betas)
Evaluate 1 and 2 steps: jaxgen eval --workdir DIR --metric modes --steps 1 (or 2).
"""

import pathlib

import ml_collections

from jaxgen.config import load_config_file
from jaxgen.consistency.method import consistency_config, sample_config

BASE = pathlib.Path(__file__).resolve().parent / "ddpm_toy2d.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(BASE)  # its data, model, optimizer and train sections
  del c["diffusion"]
  c.method = "consistency"
  c.consistency = consistency_config(mode="training", sigma_min=0.002, sigma_max=80.0,
                                     sigma_data=0.5, curriculum="ict", s0=10, s1=1280,
                                     distance="pseudo_huber", weighting="ict",
                                     level_sampling="lognormal", target_ema=0.0)
  c.sample = sample_config(steps=1, clip_x0=False)
  return c
