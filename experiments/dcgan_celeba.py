"""DCGAN (Radford et al. 2016) on CelebA at 64x64, for users with CelebA prepared as a TFDS
array_record dataset (`--config.data.data_dir=DIR`; nothing is downloaded here).

The paper's setup: batch 128, Adam lr 0.0002 and beta1 0.5, z of 100 dimensions from a uniform
(here: a standard normal), weights from N(0, 0.02), a 4x4x1024 projection and transposed
convolutions 512-256-128 up to 64x64x3 (base width 128 at full resolution here: 128 * 2^3 = 1024
at 4x4), BatchNorm in both networks, LeakyReLU 0.2 in the discriminator (64-128-256-512). The
paper trains for a few epochs (its LSUN model: one epoch); 50k steps here is about 32 epochs of
the 202,599 images at batch 128.
"""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("dcgan_digits.py"))
  c.data = data_config(name="tfds", tfds_name="celeb_a", image_size=64, channels=3, random_flip=True)
  c.model.g_ch = 128
  c.model.d_ch = 64
  c.train.batch_size = 128
  c.train.steps = 50000
  c.train.checkpoint_every = 5000
  c.train.sample_every = 5000
  c.train.log_every = 100
  return c
