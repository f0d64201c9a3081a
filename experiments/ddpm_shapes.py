"""DDPM on the builtin shapes at 16x16 (RGB): about 25 minutes of training on 2 CPU cores.

The diffusion is DDPM's (linear betas 1e-4..0.02, T=1000, eps-prediction, L_simple); the U-Net is
scaled down for 16x16 images (ch 32, three levels 16/8/4, attention at 8x8, one residual block per
level). Shapes are rendered at 32x32 with antialiasing and downsampled, so edges stay smooth.
The -cosine_v and -cond variants change only what their docstrings say.
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.diffusion.method import diffusion_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "ddpm"
  c.data = data_config(name="shapes", image_size=16, channels=3, generate_size=32,
                       num_examples=20000, random_flip=False)

  c.model = ml_collections.ConfigDict()
  c.model.name = "unet"
  c.model.ch = 32
  c.model.ch_mult = (1, 2, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (8,)
  c.model.dropout = 0.1
  c.model.num_groups = 8
  c.model.num_heads = 1
  c.model.num_head_channels = 0
  c.model.resblock_updown = False
  c.model.scale_shift_norm = False
  c.model.num_classes = 0
  c.model.remat = False
  c.model.conv_impl = "auto"
  c.model.dtype = "float32"

  c.diffusion = diffusion_config(schedule="linear", beta_start=1e-4, beta_end=0.02,
                                 num_timesteps=1000, prediction="eps", loss_weighting="simple")

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.warmup_steps = 200
  c.optimizer.schedule = "cosine"
  c.optimizer.final_lr_frac = 0.05
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 10
  c.train.ema_decay = 0.999
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.max_to_keep = 2
  c.train.async_checkpoint = True
  c.train.sample_every = 0
  c.train.sample_num = 48

  c.sample = sample_config(variance="fixed_large", clip_x0=True)
  return c
