"""DCGAN (Radford et al. 2016) on scikit-learn's 8x8 digits: a few minutes on 2 CPU cores.

The paper's training settings: Adam with lr 2e-4 and beta1 0.5, z ~ N(0, I) of 100 dimensions,
weights from N(0, 0.02), BatchNorm in both networks (not on the discriminator's first layer),
ReLU / tanh in the generator and LeakyReLU(0.2) in the discriminator, the non-saturating loss.
Batch 64 here (the paper: 128) and widths for 8x8 single-channel images. No EMA of the
generator (as in the paper): an EMA generator (decay 0.999) sampled worse here (FD 46.6 vs 34.4 on
digits, 88.9 vs 47.1 on shapes), measured when it sampled with the running BatchNorm averages,
which belong to the online weights; with EMA, sampling now recomputes them for the EMA weights
(sample.batch_norm=auto -> standing).
The other image GAN configs (dcgan_shapes, sngan_shapes, stylegan_*) derive from this file.
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.gan.method import gan_config, model_config, sample_config


def adam(lr: float, b1: float = 0.5, b2: float = 0.999) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name="adam", lr=lr, b1=b1, b2=b2, eps=1e-8, warmup_steps=0,
                                        schedule="constant", final_lr_frac=1.0, decay_steps=0,
                                        grad_clip=0.0))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "gan"
  c.data = data_config(name="digits", image_size=8, channels=1, random_flip=False)
  c.model = model_config(name="dcgan", discriminator="dcgan", g_ch=128, d_ch=64, g_norm="batch",
                         d_norm="batch")
  c.gan = gan_config(objective="non_saturating", latent_dim=100)
  c.optimizer = adam(2e-4)
  c.d_optimizer = adam(2e-4)

  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000
  c.train.batch_size = 64
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 10
  c.train.ema_decay = 0.0  # see above; experiments/stylegan_digits.py keeps one (no BatchNorm)
  c.train.ema_warmup = False  # True: decay min(ema_decay, (1 + n) / (10 + n)) at step n
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 2
  c.train.async_checkpoint = True
  c.train.sample_every = 1000
  c.train.sample_num = 64

  c.sample = sample_config()
  return c
