"""How fast minibatch discrimination's kernel sums differentiate: the library's hand-written VJPs
(`jaxgen.nn.gan.closeness_within_batch`, `closeness_to_reference`) against autodiff of the
written-out formula, measured in the same run.

    python experiments/bench_minibatch_layer.py [--batch 100] [--features 200] [--kernels 50]
        [--kernel-dim 5] [--seeds 5] [--rounds 5] [--calls 3] [--iterations 10]

The default sizes are the mode-collapse benchmark's (batch 100, the maxout's 200 features, 50
kernels of 5 dimensions, 5 seeds vmapped as the sweep does). Three programs are timed for each:
the forward pass alone; the gradient of a weighted sum of the features with respect to the
projection T and the input (a discriminator or generator step); and the gradient with respect to T
of the squared input gradient, against a reference (R1 through the per-example coupled critic: a
gradient of a gradient). Each program runs --iterations evaluations in one compiled loop; it is
compiled and run once, then timed over --rounds rounds of --calls calls; the medians of the time
per evaluation are reported with the autodiff / library ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from jaxgen.nn import gan as gan_nets


def within_by_autodiff(m):
  return jnp.sum(jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None, :]), axis=-1)), axis=1)


def against_by_autodiff(m, r):
  e = jnp.exp(-jnp.sum(jnp.abs(m[:, None] - r[None, :]), axis=-1))
  return 1.0 + jnp.sum((1.0 - jnp.eye(m.shape[0], dtype=m.dtype))[:, :, None] * e, axis=1)


def programs(within, against, batch: int, kernels: int, kernel_dim: int, iterations: int) -> dict:
  def features(t, x, reference=None):
    m = (x @ t).reshape(batch, kernels, kernel_dim)
    if reference is None:
      return within(m)
    return against(m, (reference @ t).reshape(batch, kernels, kernel_dim))

  def weighted(t, x, w):
    return jnp.sum(w * features(t, x))

  def r1(t, x, w):
    input_grad = jax.grad(lambda v: jnp.sum(w * features(t, v, reference=x)))(x)
    return jnp.sum(input_grad ** 2)

  def repeated(fn):
    # `iterations` evaluations in one compiled loop, each input depending on the last output (so
    # none is hoisted), as a training loop runs them: XLA allocates the loop's buffers once. Timing
    # separate calls instead measures glibc's allocator as much as the layer (on cpu-2c a call
    # allocating these [K, C, B, B] buffers ran up to 3x slower in a fresh process than after the
    # allocator's mmap threshold had grown).
    def loop(t, x, w):
      def body(_, x):
        out = fn(t, x, w)
        return x + 1e-6 * jnp.mean(jnp.asarray(jax.tree.leaves(out)[-1], x.dtype))
      return jax.lax.fori_loop(0, iterations, body, x)
    return jax.jit(jax.vmap(loop))

  return {"forward": repeated(lambda t, x, w: features(t, x)),
          "gradient": repeated(jax.grad(weighted, argnums=(0, 1))),
          "r1 gradient": repeated(jax.grad(r1))}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=100)
  p.add_argument("--features", type=int, default=200)
  p.add_argument("--kernels", type=int, default=50)
  p.add_argument("--kernel-dim", type=int, default=5)
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--calls", type=int, default=3)
  p.add_argument("--iterations", type=int, default=10, help="evaluations per call, in one compiled loop")
  args = p.parse_args(argv)
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(k1, (args.seeds, args.batch, args.features))
  t = 0.1 * jax.random.normal(k2, (args.seeds, args.features, args.kernels * args.kernel_dim))
  w = jax.random.normal(k3, (args.seeds, args.batch, args.kernels))
  candidates = {"autodiff": programs(within_by_autodiff, against_by_autodiff, args.batch, args.kernels, args.kernel_dim,
                                    args.iterations),
                "library": programs(gan_nets.closeness_within_batch, gan_nets.closeness_to_reference,
                                    args.batch, args.kernels, args.kernel_dim, args.iterations)}
  for progs in candidates.values():
    for fn in progs.values():
      jax.block_until_ready(fn(t, x, w))  # compile and warm up
  times = {name: {prog: [] for prog in progs} for name, progs in candidates.items()}
  for _ in range(args.rounds):  # alternate, so a drift in the machine's speed falls on both
    for name, progs in candidates.items():
      for prog, fn in progs.items():
        t0 = time.perf_counter()
        for _ in range(args.calls):
          out = fn(t, x, w)
        jax.block_until_ready(out)
        times[name][prog].append((time.perf_counter() - t0) / (args.calls * args.iterations))
  print(f"machine: {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
        f"jax {jax.__version__}; sizes {json.dumps(vars(args))}")
  print(f"{'program':<14}{'autodiff ms':>13}{'library ms':>12}{'ratio':>8}")
  for prog in candidates["library"]:
    a = statistics.median(times["autodiff"][prog]) * 1e3
    b = statistics.median(times["library"][prog]) * 1e3
    print(f"{prog:<14}{a:>13.1f}{b:>12.1f}{a / b:>7.2f}x")


if __name__ == "__main__":
  main()
