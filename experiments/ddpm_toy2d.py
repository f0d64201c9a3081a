"""DDPM on a 2D Gaussian mixture (PacGAN's ring of 8 modes by default): about a minute on 2 cores.

Evaluate mode coverage with `jaxgen eval --workdir DIR --metric modes`. For the 5x5 grid use
--config.data.variant=grid25 (modes up to +-4, hence no x0 clipping).
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.diffusion.method import diffusion_config, sample_config


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "ddpm"
  c.data = data_config(name="toy2d", variant="ring8", num_examples=50000)

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"
  c.model.hidden = 256
  c.model.depth = 4
  c.model.time_dim = 64
  c.model.dropout = 0.0

  # DDPM's diffusion: linear betas 1e-4..0.02, T=1000, eps-prediction, L_simple.
  c.diffusion = diffusion_config(schedule="linear", beta_start=1e-4, beta_end=0.02,
                                 num_timesteps=1000, prediction="eps", loss_weighting="simple")

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.lr = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = "cosine"
  c.optimizer.final_lr_frac = 0.05
  c.optimizer.decay_steps = 0  # > 0: hold lr, then decay over the last decay_steps
  c.optimizer.grad_clip = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 4000
  c.train.batch_size = 256
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 50
  c.train.ema_decay = 0.999
  c.train.ema_warmup = False  # True: decay min(ema_decay, (1 + n) / (10 + n)) at step n
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.train.max_to_keep = 2
  c.train.async_checkpoint = True
  c.train.sample_every = 2000
  c.train.sample_num = 1000

  c.sample = sample_config(variance="fixed_small", clip_x0=False)
  return c
