"""Can PacGAN's discriminator see the packed grid? A supervised probe of why PacGAN3/4 fail on the
5x5 grid (BENCHMARKS.md, GANs).

A fresh maxout discriminator (experiments/gan_mixture2d.py's: 3 layers x 200 units x 5 pieces) is
trained, with the GAN's optimizer (Adam, beta1 0.5) and batch (100 packed groups), to tell m packed
grid points (the data) from m packed points of a 'fake' distribution:
  uniform  the uniform square with the grid's per-coordinate variance (8): what a generator that
           has matched the data's mean and spread but not its modes draws (the PacGAN3 runs' state);
  blur     the grid's modes with std 0.5 (10x the data's): modes found but not sharpened.
Its accuracy on 20000 fresh groups of each is printed every --every steps, for each pack m and each
first-layer initialisation (model.d_pack_init: dense, PacGAN's; block, nn.gan.packed_block_init).

    python experiments/gan_packed_discriminator.py [--packs 1,2,3,4] [--inits dense,block]
        [--steps 10000] [--lr 1e-4] [--hidden 200] [--input-scale 1] [--fake uniform]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import builtin
from jaxgen.gan.method import pack_examples
from jaxgen.nn.gan import MLPDiscriminator

GROUPS = 100          # packed groups per batch, each way (the GAN's batch of 100 x m examples)
EVAL_GROUPS = 20000
GRID_VARIANCE = 8.0   # per coordinate: the mean of {16, 4, 0, 4, 16}


def samplers(fake: str):
  centres = jnp.asarray(builtin.toy2d_mode_centres("grid25"))
  std = builtin.toy2d_mode_std("grid25")

  def around_modes(key, n, s):
    k1, k2 = jax.random.split(key)
    return centres[jax.random.randint(k1, (n,), 0, len(centres))] + s * jax.random.normal(k2, (n, 2))

  half = float(np.sqrt(3 * GRID_VARIANCE))  # uniform on [-a, a] has variance a^2 / 3
  fakes = {"uniform": lambda key, n: jax.random.uniform(key, (n, 2), minval=-half, maxval=half),
           "blur": lambda key, n: around_modes(key, n, 0.5)}
  return (lambda key, n: around_modes(key, n, std)), fakes[fake]


def accuracy_curve(pack: int, init: str, args) -> list[float]:
  real, fake = samplers(args.fake)
  disc = MLPDiscriminator(hidden=args.hidden, pack=pack, pack_init=init)
  packed = lambda x: args.input_scale * pack_examples(x, pack)
  params = disc.init(jax.random.PRNGKey(0), jnp.zeros((1, 2 * pack)))
  tx = optax.adam(args.lr, b1=0.5, b2=0.999)
  opt = tx.init(params)

  def loss(p, key):
    kr, kf = jax.random.split(key)
    on_real = disc.apply(p, packed(real(kr, GROUPS * pack)))
    on_fake = disc.apply(p, packed(fake(kf, GROUPS * pack)))
    return jnp.mean(optax.sigmoid_binary_cross_entropy(on_real, jnp.ones_like(on_real))
                    + optax.sigmoid_binary_cross_entropy(on_fake, jnp.zeros_like(on_fake)))

  @jax.jit
  def train(p, o, key):
    def one(carry, k):
      p, o = carry
      updates, o = tx.update(jax.grad(loss)(p, k), o, p)
      return (optax.apply_updates(p, updates), o), None
    (p, o), _ = jax.lax.scan(one, (p, o), jax.random.split(key, args.every))
    return p, o

  @jax.jit
  def accuracy(p, key):
    kr, kf = jax.random.split(key)
    right_real = jnp.mean(disc.apply(p, packed(real(kr, EVAL_GROUPS * pack))) > 0)
    right_fake = jnp.mean(disc.apply(p, packed(fake(kf, EVAL_GROUPS * pack))) < 0)
    return 0.5 * (right_real + right_fake)

  curve = []
  for i in range(args.steps // args.every):
    params, opt = train(params, opt, jax.random.PRNGKey(100 + i))
    curve.append(float(accuracy(params, jax.random.PRNGKey(999))))
  return curve


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--packs", default="1,2,3,4")
  ap.add_argument("--inits", default="dense,block")
  ap.add_argument("--steps", type=int, default=10000)
  ap.add_argument("--every", type=int, default=1000)
  ap.add_argument("--lr", type=float, default=1e-4)
  ap.add_argument("--hidden", type=int, default=200)
  ap.add_argument("--input-scale", type=float, default=1.0)
  ap.add_argument("--fake", choices=("uniform", "blur"), default="uniform")
  args = ap.parse_args()
  print(f"fake {args.fake}, lr {args.lr}, {args.hidden} units, inputs x {args.input_scale}; "
        f"accuracy every {args.every} steps")
  print("| pack m | first layer | accuracy |\n|---|---|---|")
  for init in args.inits.split(","):
    for pack in (int(p) for p in args.packs.split(",")):
      if init == "block" and pack == 1:
        continue  # one example: the block init is the dense one
      curve = accuracy_curve(pack, init, args)
      print(f"| {pack} | {init} | {' '.join(f'{a:.3f}' for a in curve)} |", flush=True)


if __name__ == "__main__":
  main()
