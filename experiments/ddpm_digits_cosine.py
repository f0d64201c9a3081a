"""DDPM on digits with improved DDPM's cosine schedule (Nichol & Dhariwal 2021, s = 0.008, betas
clipped at 0.999); everything else as experiments/ddpm_digits.py (linear schedule, eps)."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_digits.py"))
  c.diffusion.schedule = "cosine"
  return c
