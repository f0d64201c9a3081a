"""What unrolling does to the generator's gradient: from the discriminator states of a mode-collapse
sweep checkpoint (experiments/gan_mode_collapse.py), the generator's gradient on the same batch,
latents and keys with no unrolling, with k updates unrolled through the discriminator's own Adam
(state and all, Metz et al. 2017), and with k plain SGD steps of several sizes.

    python experiments/gan_unroll_gradient.py --root runs/ring_unrolled [--dataset ring8]
        [--variant unrolled5] [--seeds 5] [--sgd-lr 1e-3,1e-2,1e-1] [--batches 4] [--set K=V ...]

--set takes the sweep's own overrides (the checkpoint is refused under another config). For each
seed and batch it prints, per way of unrolling, the gradient's norm, the norm of what unrolling
adds to the plain gradient relative to the plain gradient's, and the cosine with the plain
gradient; then the mean over seeds and batches. It also prints the spread of the discriminator's
Adam scale 1 / (sqrt(v) + eps), which multiplies the derivative of each unrolled Adam update with
respect to the gradient that the generator's samples produce.

How the gradient is read: the generator's optimizer is swapped for SGD of rate 1 without momentum
(a fresh state), so one step of the method's own two-player update moves the generator by minus
its gradient exactly; the discriminator keeps its restored Adam state, and its ordinary update
before the generator's is the one training takes. A --root without a checkpoint measures the
seeds' initial states (whose second moments are all 0 before the discriminator's first update).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def unroll_overrides(kind: str) -> dict:
  """'plain' | 'adam' | 'sgd:<lr>' -> the gan.* overrides of that way of unrolling."""
  if kind == "plain":
    return {"gan.unrolled_steps": 0}
  if kind == "adam":
    return {"gan.unroll_optimizer": "discriminator"}
  lr = float(kind.split(":")[1])
  return {"gan.unroll_optimizer": "sgd", "gan.unroll_lr": lr}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--root", required=True, type=pathlib.Path)
  p.add_argument("--dataset", default="ring8")
  p.add_argument("--variant", default="unrolled5")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--steps", type=int, default=15000, help="the sweep's --steps (its recorded length)")
  p.add_argument("--sgd-lr", default="1e-3,1e-2,1e-1")
  p.add_argument("--batches", type=int, default=4)
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
  args = p.parse_args(argv)

  import jax
  import jax.numpy as jnp
  from jax.flatten_util import ravel_pytree
  from gan_mode_collapse import VARIANTS, parse_overrides
  from jaxgen.config import apply_overrides, load_config_file
  from jaxgen.gan import method as gan_method
  from jaxgen.nn.backbone import batch_field
  from jaxgen.train.sweep import SeedSweep

  def config_with(extra: dict, read_gradient: bool = False):
    config = load_config_file(HERE / "gan_mixture2d.py")
    apply_overrides(config, {"data.variant": args.dataset, "train.steps": args.steps,
                             **VARIANTS[args.variant], **parse_overrides(args.set), **extra})
    if read_gradient:  # the generator's optimizer: SGD of rate 1 without momentum
      config.optimizer.name, config.optimizer.lr, config.optimizer.momentum = "sgd", 1.0, 0.0
    return config

  seeds = list(range(args.seeds))
  base = config_with({})
  sweep = SeedSweep(base, seeds, workdir=args.root / args.dataset / args.variant / "sweep")
  at = int(sweep.step()[0])
  sweep.close()
  print(f"{args.dataset} {args.variant} checkpoint at step {at}, seeds {seeds}")

  kinds = ["plain", "adam"] + [f"sgd:{lr}" for lr in args.sgd_lr.split(",")]
  methods = {k: gan_method.build(config_with(unroll_overrides(k), read_gradient=True)) for k in kinds}
  updates = {k: jax.jit(m.update) for k, m in methods.items()}
  field = batch_field(base)
  data = sweep.data[field]
  flat = lambda tree: ravel_pytree(tree)[0]

  rows = {k: [] for k in kinds if k != "plain"}
  for i, seed in enumerate(seeds):
    state = sweep.seed_view(i)
    d_opt = state.opt_state["discriminator"]
    # Each method's joint optimizer state: a fresh generator SGD state, the restored discriminator's.
    opts = {k: dict(m.optimizer.init(state.params), discriminator=d_opt) for k, m in methods.items()}
    # optax.adam's state is (ScaleByAdamState, the rate's state); bias correction is < 1% after
    # 5000 steps of b2 = 0.999 and left out.
    nu = flat(next(part for part in d_opt if hasattr(part, "nu")).nu)
    scale = 1.0 / (jnp.sqrt(nu) + base.d_optimizer.eps)
    q = np.percentile(np.asarray(scale), [50, 90, 99, 100])
    print(f"seed {seed}: discriminator Adam 1/(sqrt(v)+eps) median {q[0]:.3g}, 90% {q[1]:.3g}, "
          f"99% {q[2]:.3g}, max {q[3]:.3g}")
    for b in range(args.batches):
      key = jax.random.PRNGKey(10_000 * seed + b)
      picked = jax.random.randint(jax.random.fold_in(key, 1), (base.train.batch_size,), 0, len(data))
      batch = {field: data[picked]}
      grads = {}
      for k in methods:
        new_params, *_ = updates[k](state.params, opts[k], state.mutable, batch, key, state.step)
        grads[k] = flat(state.params["generator"]) - flat(new_params["generator"])
      g0 = grads["plain"]
      line = [f"  batch {b}: plain |g| {float(jnp.linalg.norm(g0)):.3g}"]
      for k in rows:
        g = grads[k]
        norm, extra = float(jnp.linalg.norm(g)), float(jnp.linalg.norm(g - g0) / jnp.linalg.norm(g0))
        cos = float(jnp.dot(g, g0) / (jnp.linalg.norm(g) * jnp.linalg.norm(g0)))
        rows[k].append((norm, extra, cos))
        line.append(f"{k} |g| {norm:.3g} added/plain {extra:.3g} cos {cos:.3f}")
      print(", ".join(line), flush=True)
  print("mean over seeds and batches (|g|, |g - g_plain| / |g_plain|, cosine with g_plain):")
  for k, r in rows.items():
    a = np.asarray(r)
    print(f"  {k:10s} {a[:, 0].mean():.3g}  {a[:, 1].mean():.3g}  {a[:, 2].mean():.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
