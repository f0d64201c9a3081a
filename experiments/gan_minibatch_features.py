"""What minibatch discrimination's features tell the discriminator in a mode-collapse sweep.

    python experiments/gan_minibatch_features.py --root ROOT --dataset grid25 [--seeds 5]
        [--set model.minibatch_init_std=0.02 ...]

Restores the latest checkpoint of ROOT/<dataset>/minibatch_disc/sweep (written by
experiments/gan_mode_collapse.py with the same --seeds and --set; stop that run first) and, for each
seed, runs the discriminator in training mode on a batch of 100 reals and on a batch of 100 fakes
from the online generator, as a training step sees them. It prints the mean minibatch feature
o_b(x_i) (Salimans et al. 2016: 1 + sum over the rest of the batch of exp(-L1)), the part of the
logit that the output layer reads from those features, and the whole logit, for each batch. A
large real-fake gap in the features' part of the logit means the discriminator separates the two
by batch statistics rather than by where each point lies.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
BATCH = 100


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--root", required=True)
  p.add_argument("--dataset", default="grid25")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
  args = p.parse_args(argv)

  import jax
  sys.path.insert(0, str(HERE))
  import gan_mode_collapse as driver
  from jaxgen.config import apply_overrides, load_config_file
  from jaxgen.errors import UserError
  from jaxgen.gan import method as gan_method
  from jaxgen.train.sweep import SeedSweep

  config = load_config_file(HERE / "gan_mixture2d.py")
  # train.steps is not part of a sweep checkpoint's identity: any value restores it.
  apply_overrides(config, {"data.variant": args.dataset, **driver.VARIANTS["minibatch_disc"],
                           **driver.parse_overrides(args.set)})
  workdir = pathlib.Path(args.root) / args.dataset / "minibatch_disc" / "sweep"
  if not workdir.exists():
    print(f"error: no sweep checkpoint in {workdir}; run experiments/gan_mode_collapse.py "
          "--variants minibatch_disc with this --root first.", file=sys.stderr)
    return 2
  try:
    sweep = SeedSweep(config, list(range(args.seeds)), workdir=workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  g, m, _ = gan_method._sections(config)
  generator, discriminator = gan_method._networks(config, g, m)
  kernels = m.minibatch_kernels
  print(f"{args.dataset}, step {int(sweep.step()[0])}: per batch of {BATCH}, mean o_b / the logit "
        "read from o / the logit")
  for i in range(args.seeds):
    state = sweep.seed_view(i)
    g_params, d_params = state.params["generator"], state.params["discriminator"]
    g_vars, d_vars = state.mutable["generator"], state.mutable["discriminator"]
    rows = jax.random.randint(jax.random.PRNGKey(i), (BATCH,), 0, sweep.num_examples)
    real = sweep.data["point"][rows]
    z = jax.random.normal(jax.random.PRNGKey(100 + i), (BATCH, g.latent_dim))
    fake, _ = generator.apply({"params": g_params, **g_vars}, z, True, mutable=list(g_vars))
    readout = np.asarray(d_params["dense_out"]["kernel"])[-kernels:, 0]  # the weights on o
    cells = []
    for x in (real, fake):
      _, inter = discriminator.apply({"params": d_params, **d_vars}, x, True,
                                     capture_intermediates=True, mutable=["intermediates", *d_vars])
      o = np.asarray(inter["intermediates"]["minibatch"]["__call__"][0])[:, -kernels:]
      logit = np.asarray(inter["intermediates"]["__call__"][0])
      cells.append(f"{o.mean():.2f} / {(o @ readout).mean():+.2f} / {logit.mean():+.2f}")
    print(f"seed {i}: real {cells[0]}; fake {cells[1]}")
  sweep.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
