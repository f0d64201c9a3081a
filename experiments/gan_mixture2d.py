"""GANs on 2D Gaussian mixtures: PacGAN's mode-collapse setup (Lin et al. 2018, sec. 5.1, after
VEEGAN): the ring of 8 Gaussians (radius 1, std 0.01) or, with --config.data.variant=grid25, the 5x5
grid on {-4, -2, 0, 2, 4}^2 (std 0.05).

Networks as in the paper: a generator of 4 hidden layers x 400 units (ReLU, BatchNorm) from a 2-d
Gaussian latent, and a discriminator of 3 maxout layers (200 units x 5 pieces). The remedies of the
benchmark are overrides of this file (experiments/gan_mode_collapse.py runs them all):
  vanilla (minimax)         --config.gan.objective=minimax
  non-saturating            (the default)
  WGAN-GP                   --config.gan.objective=wgan_gp --config.gan.gp_weight=0.1 --config.gan.n_critic=5
                            (lambda 0.1, the WGAN-GP authors' choice for 2-d toy data; 10 is theirs for images)
  unrolled (5 steps)        --config.gan.unrolled_steps=5
  minibatch discrimination  --config.model.minibatch_kernels=50
  PacGAN2/3/4               --config.gan.pack=2 (3, 4)
                            (on the grid add --config.model.d_pack_init=block for m >= 3:
                            the dense first layer does not learn the packed grid; BENCHMARKS.md)
Evaluate with `jaxgen eval --workdir DIR --metric modes --num 2500`.
"""

import ml_collections

from jaxgen.data import data_config
from jaxgen.gan.method import gan_config, model_config, sample_config


def optimizer(lr: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(name="adam", lr=lr, b1=0.5, b2=0.999, eps=1e-8,
                                        warmup_steps=0, schedule="constant", final_lr_frac=1.0,
                                        decay_steps=0, grad_clip=0.0))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.method = "gan"
  c.data = data_config(name="toy2d", variant="ring8", num_examples=100000)
  c.model = model_config(name="mlp", discriminator="mlp", g_hidden=400, g_depth=4, d_hidden=200,
                         d_pieces=5, d_depth=3, g_norm="batch")
  c.gan = gan_config(objective="non_saturating", latent_dim=2)
  # lr 1e-4: at 5e-4 the plain GANs lost ring modes (BENCHMARKS.md, "GANs").
  c.optimizer = optimizer(1e-4)      # the generator's
  c.d_optimizer = optimizer(1e-4)    # the discriminator's

  c.train = ml_collections.ConfigDict()
  c.train.steps = 2500
  c.train.batch_size = 100
  c.train.grad_accum_steps = 1
  c.train.steps_per_call = 100
  # The benchmark judges an EMA of the generator, sampled with standing BatchNorm statistics
  # recomputed for its weights (sample.batch_norm=auto): the online generator's samples orbit the
  # modes, and the average sits on them (ring, 5 seeds, 15000 steps: 86.8% high quality against
  # 59.2% for the online weights of the non-saturating GAN, 92.6% against 76.1% for PacGAN2).
  c.train.ema_decay = 0.999
  c.train.ema_warmup = False  # True: decay min(ema_decay, (1 + n) / (10 + n)) at step n
  c.train.log_every = 500
  c.train.checkpoint_every = 2500
  c.train.max_to_keep = 1
  c.train.async_checkpoint = True
  c.train.sample_every = 0
  c.train.sample_num = 2500

  c.sample = sample_config()
  return c
