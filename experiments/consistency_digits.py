"""Consistency distillation (Song et al. 2023) on scikit-learn's 8x8 digits from a trained DDPM, with
the U-Net and optimizer of experiments/ddpm_digits.py.

The CM paper's CD settings where they apply: N = 18 Karras levels (rho 7), Heun teacher steps,
target EMA mu = 0.95, uniform weighting and level sampling; squared L2 instead of LPIPS (no
pretrained perceptual network here). sigma_min is 0.01 rather than 0.002: a discrete-time DDPM
teacher is defined only down to its smallest noise level (0.0064 for the cosine schedule).
  jaxgen train --config experiments/consistency_digits.py --workdir runs/cd \
      --config.consistency.teacher=runs/ddpm_digits_cosine
Consistency training (iCT) instead: --config.consistency.mode=training (and the iCT keys below).
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.consistency.method import consistency_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "consistency"

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

  c.consistency = consistency_config(
      mode="distillation", teacher="", solver="heun", sigma_min=0.01, sigma_max=80.0,
      sigma_data=0.5, curriculum="fixed", num_levels=18, distance="l2", weighting="uniform",
      level_sampling="uniform", target_ema=0.95)

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
  c.train.steps = 3000
  c.train.batch_size = 64
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 10
  c.train.ema_decay = 0.999
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 3
  c.train.async_checkpoint = True
  c.train.sample_every = 1000
  c.train.sample_num = 64

  c.sample = sample_config(steps=1, clip_x0=True)
  return c
