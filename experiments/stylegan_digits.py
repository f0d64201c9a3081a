"""StyleGAN (Karras et al. 2019) on the 8x8 digits, grown progressively from 4x4.

StyleGAN's recipe, scaled to the data: an 8-layer mapping network (lr multiplier 0.01) from z to w,
a learned 4x4 constant, AdaIN styles and noise inputs at every layer, style mixing with
probability 0.9, the running mean of w for truncation, the ProGAN discriminator with minibatch
stddev (group 4), the non-saturating loss with R1 (gamma 10 here: StyleGAN's FFHQ setting), Adam
lr 1e-3, beta1 0, beta2 0.99, and an EMA of the generator. Latent and style sizes 64 (the paper:
512), channels 128 at 4x4 and 64 at 8x8. Progressive growing: 500 steps at 4x4, a 500-step fade-in
of 8x8, then 8x8 (model.progressive=false trains the full network from the start).
Sample with `jaxgen sample --truncation 0.7` for the truncation trick.
"""

import pathlib

from jaxgen.config import load_config_file


def get_config():
  c = load_config_file(pathlib.Path(__file__).with_name("dcgan_digits.py"))
  m = c.model
  m.name = "stylegan"
  m.discriminator = "stylegan"
  m.w_dim = 64
  m.mapping_depth = 8
  m.g_ch = 64
  m.d_ch = 64
  m.max_ch = 128
  m.mixing_prob = 0.9
  m.minibatch_std_group = 4
  m.d_norm = "none"
  m.progressive = True
  m.progressive_steps = 500
  c.gan.latent_dim = 64
  c.gan.r1_gamma = 10.0
  for opt in (c.optimizer, c.d_optimizer):
    opt.lr, opt.b1, opt.b2 = 1e-3, 0.0, 0.99
  c.train.ema_decay = 0.999
  return c
