"""DDPM on digits, the network predicting v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho
2022) with L_simple on v; everything else as experiments/ddpm_digits.py."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_digits.py"))
  c.diffusion.prediction = "v"
  return c
