"""SNGAN (Miyato et al. 2018) on CIFAR-10 with the standard CNN, for users with cifar10 prepared as
a TFDS array_record dataset (`--config.data.data_dir=DIR`; nothing is downloaded here).

The paper's standard-CNN setting (its Table 1, setting B-style Adam for the hinge loss): every
discriminator layer spectrally normalised with one power iteration per update, the hinge loss,
Adam with lr 0.0002, beta1 0.5, beta2 0.999, one discriminator update per generator update, batch
64, z of 128 dimensions, 100k generator updates. The discriminator here is the DCGAN-style
strided network (32 -> 16 -> 8 -> 4, channels 64-128-256) rather than the paper's deeper
3x3/4x4 stack; the generator is DCGAN's (4x4x512 -> 8 -> 16 -> 32).
"""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("dcgan_digits.py"))
  c.data = data_config(name="tfds", tfds_name="cifar10", image_size=32, channels=3, random_flip=True)
  c.model.g_ch = 128
  c.model.d_ch = 64
  c.model.spectral_norm = True
  c.model.d_norm = "none"
  c.gan.objective = "hinge"
  c.gan.latent_dim = 128
  c.train.steps = 100000
  c.train.checkpoint_every = 10000
  c.train.sample_every = 10000
  c.train.log_every = 100
  return c
