"""Consistency training (iCT recipe: pseudo-Huber, lognormal levels, curriculum 10 -> 1280, no EMA
target) on a 2D Gaussian mixture (PacGAN's ring of 8 modes by default).

Consistency distillation from a trained DDPM (experiments/ddpm_toy2d.py) instead:
  --config.consistency.mode=distillation --config.consistency.teacher=RUN \
  --config.consistency.sigma_min=0.01 (the teacher's smallest noise level: 0.01 for DDPM's linear betas)
Evaluate 1 and 2 steps: jaxgen eval --workdir DIR --metric modes --steps 1 (or 2).
"""

import ml_collections

from jaxgen.consistency.method import consistency_config, sample_config
from jaxgen.data import data_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "consistency"
  c.data = data_config(name="toy2d", variant="ring8", num_examples=50000)

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"
  c.model.hidden = 256
  c.model.depth = 4
  c.model.time_dim = 64
  c.model.dropout = 0.0

  c.consistency = consistency_config(mode="training", sigma_min=0.002, sigma_max=80.0,
                                     sigma_data=0.5, curriculum="ict", s0=10, s1=1280,
                                     distance="pseudo_huber", weighting="ict",
                                     level_sampling="lognormal", target_ema=0.0)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = "cosine"
  c.optimizer.final_lr_frac = 0.05
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 4000
  c.train.batch_size = 256
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 50
  c.train.ema_decay = 0.999
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 2
  c.train.async_checkpoint = True
  c.train.sample_every = 2000
  c.train.sample_num = 1000

  c.sample = sample_config(steps=1, clip_x0=False)
  return c
