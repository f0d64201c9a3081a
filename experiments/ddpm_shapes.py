"""DDPM on the builtin shapes at 16x16 (RGB): about 25 minutes of training on 2 CPU cores.

experiments/ddpm_digits.py (DDPM's diffusion: linear betas 1e-4..0.02, T=1000, eps-prediction,
L_simple; its optimizer and EMA) with the data and U-Net changed for 16x16 colour images: three
levels 16/8/4 with attention at 8x8, 2000 steps. Shapes are rendered at 32x32 with antialiasing and
downsampled, so edges stay smooth. The -cosine_v and -cond variants change only what their
docstrings say.
"""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_digits.py"))
  c.data = data_config(name="shapes", image_size=16, channels=3, generate_size=32,
                       num_examples=20000, random_flip=False)
  c.model.ch_mult = (1, 2, 2)
  c.model.attn_resolutions = (8,)
  c.train.steps = 2000
  c.train.checkpoint_every = 500
  c.train.max_to_keep = 2
  c.train.sample_every = 0
  c.train.sample_num = 48
  return c
