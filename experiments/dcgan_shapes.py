"""DCGAN on the builtin shapes at 16x16 (RGB), the data of experiments/ddpm_shapes.py: the
settings of experiments/dcgan_digits.py (the paper's) with generator and discriminator widths for
three resolutions (4, 8, 16). experiments/sngan_shapes.py changes only the objective and the
discriminator's normalisation."""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("dcgan_digits.py"))
  c.data = data_config(name="shapes", image_size=16, channels=3, generate_size=32,
                       num_examples=20000, random_flip=False)
  c.model.g_ch = 64
  c.model.d_ch = 64
  c.train.steps = 3000
  c.train.sample_num = 48
  return c
