"""StyleGAN on the builtin shapes at 16x16 (RGB): experiments/stylegan_digits.py's recipe with the
data of experiments/dcgan_shapes.py, one more level (4 -> 8 -> 16, channels 128-128-64) and
progressive growing over 500-step phases (4x4, fade in 8x8, 8x8, fade in 16x16, 16x16)."""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("stylegan_digits.py"))
  c.data = data_config(name="shapes", image_size=16, channels=3, generate_size=32,
                       num_examples=20000, random_flip=False)
  c.train.steps = 3000
  c.train.sample_num = 48
  return c
