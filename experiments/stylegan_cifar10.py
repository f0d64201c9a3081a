"""StyleGAN (Karras et al. 2019) on CIFAR-10 at 32x32, for users with cifar10 prepared as a TFDS
array_record dataset (nothing is downloaded here): experiments/stylegan_digits.py's recipe at the
paper's sizes (z and w of 512 dimensions, an 8-layer mapping network with lr multiplier 0.01, style
mixing 0.9, R1 gamma 10, Adam 0.001 / beta1 0 / beta2 0.99, minibatch stddev group 4, an EMA of
the generator), channels 512 up to 16x16 and 256 at 32x32, batch 32, and progressive growing from
4x4 with 20k steps per phase (ProGAN's 600k images per fade-in or stable phase at batch 32: about
19k steps).
"""

import pathlib

from jaxgen.config import load_config_file
from jaxgen.data import data_config


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("stylegan_digits.py"))
  c.data = data_config(name="tfds", tfds_name="cifar10", image_size=32, channels=3, random_flip=True)
  m = c.model
  m.w_dim, m.g_ch, m.d_ch, m.max_ch = 512, 256, 256, 512
  m.progressive_steps = 20000
  c.gan.latent_dim = 512
  c.train.batch_size = 32
  c.train.steps = 200000
  c.train.checkpoint_every = 10000
  c.train.sample_every = 10000
  c.train.log_every = 100
  return c
