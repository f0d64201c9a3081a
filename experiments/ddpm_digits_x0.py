"""DDPM on digits, the network predicting x0 instead of eps (L_simple on x0: uniform weight on
||x0_hat - x0||^2); everything else as experiments/ddpm_digits.py."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_digits.py"))
  c.diffusion.prediction = "x0"
  return c
