"""DDPM on shapes 16x16 with the cosine schedule and v-prediction; otherwise experiments/ddpm_shapes.py."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_shapes.py"))
  c.diffusion.schedule = "cosine"
  c.diffusion.prediction = "v"
  return c
