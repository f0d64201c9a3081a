"""DDPM (Ho et al. 2020) on scikit-learn's 8x8 digits: trains in about five minutes on 2 CPU cores.

The diffusion settings are the paper's (linear betas 1e-4..0.02, T=1000, eps-prediction, L_simple,
Adam, grad clip 1, EMA); the U-Net is scaled down (ch 32, two levels: 8x8 and 4x4, attention at 4x4)
for a single-channel dataset of 1500 images at their native 8x8 resolution. Set data.image_size=16
(and model.attn_resolutions=(8,)) for bicubically upsampled digits at about 4x the cost.
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.diffusion.method import diffusion_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "ddpm"

  # Native 8x8 resolution; digits are not mirror-symmetric, so no flips.
  c.data = data_config(name="digits", image_size=8, channels=1, random_flip=False)

  c.model = ml_collections.ConfigDict()
  c.model.name = "unet"
  c.model.ch = 32
  c.model.ch_mult = (1, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (4,)
  c.model.dropout = 0.1
  c.model.num_groups = 8
  c.model.num_heads = 1
  c.model.num_head_channels = 0   # > 0: attention heads of this width instead of num_heads
  c.model.resblock_updown = False  # ADM options (see jaxgen.nn.unet)
  c.model.scale_shift_norm = False
  c.model.num_classes = 0          # 10 for a class-conditional model (classifier-free guidance)
  c.model.remat = False
  c.model.conv_impl = "auto"    # im2col on CPU (faster weight gradients), XLA conv elsewhere
  c.model.dtype = "float32"

  # DDPM's diffusion: linear betas 1e-4..0.02, T=1000, eps-prediction, L_simple.
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
  c.optimizer.decay_steps = 0  # > 0: hold lr, then decay over the last decay_steps
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000
  c.train.batch_size = 64
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 10
  c.train.ema_decay = 0.999
  c.train.ema_warmup = False  # True: decay min(ema_decay, (1 + n) / (10 + n)) at step n
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 3
  c.train.async_checkpoint = True
  c.train.sample_every = 1000
  c.train.sample_num = 64

  # The paper's sigma_t^2 = beta_t; sharper for few-step-trained nets.
  c.sample = sample_config(variance="fixed_large", clip_x0=True)
  return c
