"""DDPM on CIFAR-10 exactly as Ho et al. (2020) trained it (35.7M parameters).

Paper, section 4 and appendix B: the PixelCNN++-style U-Net with ch=128, ch_mult=(1, 2, 2, 2), two
residual blocks per resolution, self-attention at 16x16, dropout 0.1; T=1000 linear betas
1e-4..0.02; eps-prediction with L_simple; Adam at 2e-4 with 5000 warmup steps, gradient clipping at
1, batch 128, EMA decay 0.9999, random horizontal flips; 800k steps. The paper samples with
sigma_t^2 = beta_t on CIFAR-10.

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10` where downloads work; point
data.data_dir/$JAXGEN_DATA_DIR at it). `jaxgen info --config experiments/ddpm_cifar10.py` counts the
parameters without data.
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.diffusion.method import diffusion_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "ddpm"
  c.data = data_config(name="tfds", tfds_name="cifar10", image_size=32, channels=3,
                       random_flip=True)

  c.model = ml_collections.ConfigDict()
  c.model.name = "unet"
  c.model.ch = 128
  c.model.ch_mult = (1, 2, 2, 2)
  c.model.num_res_blocks = 2
  c.model.attn_resolutions = (16,)
  c.model.dropout = 0.1
  c.model.num_groups = 32
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
  c.optimizer.lr = 2e-4
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.warmup_steps = 5000
  c.optimizer.schedule = "constant"
  c.optimizer.final_lr_frac = 1.0
  c.optimizer.decay_steps = 0  # > 0: hold lr, then decay over the last decay_steps
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 800_000
  c.train.batch_size = 128
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 10
  c.train.ema_decay = 0.9999
  c.train.ema_warmup = False  # True: decay min(ema_decay, (1 + n) / (10 + n)) at step n
  c.train.log_every = 100
  c.train.checkpoint_every = 10_000
  c.train.max_to_keep = 3
  c.train.async_checkpoint = True
  c.train.sample_every = 50_000
  c.train.sample_num = 64

  c.sample = sample_config(variance="fixed_large", clip_x0=True)
  return c
