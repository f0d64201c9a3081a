"""DDPM on 256x256 LSUN as Ho et al. (2020) trained it (114M parameters).

The CIFAR-10 setup (experiments/ddpm_cifar10.py) with the paper's 256x256 changes (appendix B): six
resolutions ch_mult=(1, 1, 2, 2, 4, 4) (256 down to 8) with attention at 16x16, dropout 0, the
learning rate lowered to 2e-5 ("unstable to train with the larger learning rate"), batch 64,
1.2M steps for LSUN Church (2.4M for Bedroom, which the paper trains without flips).

Needs the LSUN category prepared for TFDS (data.tfds_name, default lsun/church_outdoor).
"""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("ddpm_cifar10.py"))
  c.data.tfds_name = "lsun/church_outdoor"
  c.data.image_size = 256
  c.model.ch_mult = (1, 1, 2, 2, 4, 4)
  c.model.attn_resolutions = (16,)
  c.model.dropout = 0.0
  c.optimizer.lr = 2e-5
  c.train.batch_size = 64
  c.train.steps = 1_200_000
  # Not the paper's, changes no numbers: set model.remat=True to trade compute for activation
  # memory when the batch does not fit.
  c.model.remat = False
  return c
