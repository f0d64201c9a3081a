"""A spectral-norm hinge GAN (Miyato et al. 2018) on shapes at 16x16: experiments/dcgan_shapes.py
with every discriminator layer spectrally normalised (one power iteration per step), no
BatchNorm in the discriminator, and the hinge loss; SNGAN's standard-CNN optimizer (Adam 2e-4,
beta1 0.5, beta2 0.999, one discriminator step per generator step)."""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("dcgan_shapes.py"))
  c.model.spectral_norm = True
  c.model.d_norm = "none"
  c.gan.objective = "hinge"
  return c
