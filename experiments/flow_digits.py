"""1-rectified flow (Liu et al. 2022) on scikit-learn's 8x8 digits, with the U-Net and optimizer of
experiments/ddpm_digits.py: about five minutes on 2 CPU cores.

The few-step workflow (experiments/fewstep.py runs all of it and the evaluation):
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf1
  jaxgen reflow --workdir runs/rf1 --out runs/rf1_couplings --num 10000 --steps 100
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf2 --config.data.name=couplings \
      --config.data.path=runs/rf1_couplings --config.flow.init_from=runs/rf1
  jaxgen reflow --workdir runs/rf2 --out runs/rf2_couplings --num 10000 --steps 100
  jaxgen train --config experiments/flow_digits.py --workdir runs/rf2_distilled \
      --config.data.name=couplings --config.data.path=runs/rf2_couplings \
      --config.flow.init_from=runs/rf2 --config.flow.time_sampling=discrete \
      --config.flow.discrete_steps=1 --config.sample.steps=1
  jaxgen sample --workdir runs/rf2_distilled --steps 1 --out one_step.png
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.flow.method import flow_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "rectified_flow"

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

  c.flow = flow_config(time_sampling="uniform")

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

  c.sample = sample_config(sampler="flow_euler", steps=100)
  return c
