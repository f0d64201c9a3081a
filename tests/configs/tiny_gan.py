"""A GAN on the ring of 8 Gaussians small enough to train in seconds (tests only), with the
batch-coupled parts switched on (BatchNorm in the generator, minibatch discrimination, PacGAN
packing, two critic steps, one unrolled step): what must not change with the device count."""

import pathlib

import ml_collections

from jaxgen.config import load_config_file

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "gan_mixture2d.py"


def get_config() -> ml_collections.ConfigDict:
  c = load_config_file(EXPERIMENT)
  c.data.num_examples = 2000
  c.data.num_threads = 2
  c.model.g_hidden = 32
  c.model.g_depth = 2
  c.model.d_hidden = 16
  c.model.d_pieces = 2
  c.model.d_depth = 2
  c.model.minibatch_kernels = 4
  c.model.minibatch_kernel_dim = 3
  c.gan.pack = 2
  c.gan.n_critic = 2
  c.gan.unrolled_steps = 1
  c.optimizer.lr = 1e-3
  c.d_optimizer.lr = 2e-3
  c.train.steps = 20
  c.train.batch_size = 64
  c.train.steps_per_call = 5
  c.train.ema_decay = 0.9
  c.train.log_every = 5
  c.train.checkpoint_every = 10
  c.train.max_to_keep = 2
  c.train.sample_num = 64
  return c
