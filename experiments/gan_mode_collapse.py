"""The mode-collapse benchmark (PacGAN, Lin et al. 2018, Table 1): GAN variants on the ring of 8
Gaussians and the 5x5 grid, several seeds each, judged by modes captured, percent high-quality
samples and reverse KL on 2500 samples (jaxgen.metrics.modes), reported as mean +- standard error.

    python experiments/gan_mode_collapse.py --root runs/mode_collapse [--datasets ring8,grid25]
        [--seeds 5] [--variants vanilla,non_saturating,...] [--steps 3000] [--eval-every N]
        [--set train.ema_decay=0 ...] [--cpu-devices N] [--cpu-library-fusions none|default]

Every run is experiments/gan_mixture2d.py with the variant's overrides. The seeds of a variant are
trained together by jaxgen.train.sweep.SeedSweep: the engine's update (the same two-player step
`jaxgen train` runs, with its keys, EMA and optimizers) vmapped over seeds in one compiled program,
each seed's state the one `jaxgen train --config.seed=k` starts from, batches drawn in the graph
from the in-memory training set. Results go to ROOT/<dataset>/<variant>/seed<k>.json (with the
measurements every --eval-every steps as 'history', printed as taken and kept in progress.json
until the variant finishes) and the samples beside them (.npy). The sweep's states are checkpointed
in ROOT/<dataset>/<variant>/sweep every --checkpoint-every steps (default: --eval-every) and at the
end, so a stopped run continues from its last checkpoint, and a rerun with more --steps extends a
finished variant (the same seeds and settings; other --set values are refused, but for learning-rate
schedules that agree on the steps taken: a cooldown, e.g. `--set optimizer.schedule=linear
optimizer.final_lr_frac=0 optimizer.decay_steps=5000` and the same for d_optimizer, continues a
copy of a constant-rate ROOT); a rerun skips variants already trained to --steps. At the end it prints the
markdown table and writes ROOT/<dataset>_<variants>_scatter.png (real data and seed 0's samples, one
panel per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent

# name -> config overrides (on top of --steps, the seed and the dataset). WGAN-GP's critic takes 5
# steps per generator step, each on its own share of the batch: the batch is 5x so that every
# player's step sees 100 examples, as in the other variants. Its lambda is 0.1, the WGAN-GP
# authors' setting for their 2-d toy data (the paper's 10 is for images): on the ring, whose modes
# have std 0.01, lambda 10 held 7.4 modes / 49.9% high quality at 15000 steps, 0.1 8.0 / 86.8%
# (BENCHMARKS.md). Runs measured before this change reproduce with --set gan.gp_weight=10.
VARIANTS = {
    "vanilla": {"gan.objective": "minimax"},
    "non_saturating": {},
    "wgan_gp": {"gan.objective": "wgan_gp", "gan.gp_weight": 0.1, "gan.n_critic": 5,
                "train.batch_size": 500},
    "unrolled5": {"gan.unrolled_steps": 5},
    "minibatch_disc": {"model.minibatch_kernels": 50, "model.minibatch_kernel_dim": 5},
    "pacgan2": {"gan.pack": 2, "train.batch_size": 200},
    "pacgan3": {"gan.pack": 3, "train.batch_size": 300},
    "pacgan4": {"gan.pack": 4, "train.batch_size": 400},
}
LABELS = {"vanilla": "GAN (minimax)", "non_saturating": "GAN (non-saturating)", "wgan_gp": "WGAN-GP",
          "unrolled5": "Unrolled GAN (5 steps)", "minibatch_disc": "Minibatch discrimination",
          "pacgan2": "PacGAN2", "pacgan3": "PacGAN3", "pacgan4": "PacGAN4"}
# PacGAN's Table 1 (Lin et al. 2018): modes captured / percent high-quality / reverse KL.
PUBLISHED = {
    "ring8": {"vanilla": (6.3, 98.2, 0.45), "pacgan2": (7.9, 95.6, 0.07), "pacgan3": (7.8, 97.7, 0.10),
              "pacgan4": (7.8, 95.9, 0.07)},
    "grid25": {"vanilla": (17.3, 94.8, 0.70), "pacgan2": (23.8, 91.3, 0.13),
               "pacgan3": (24.6, 94.2, 0.06), "pacgan4": (24.8, 93.6, 0.04)},
}
NUM_SAMPLES = 2500


def mode_fields(r, prefix: str = "") -> dict:
  """The figures of a jaxgen.metrics.modes.ModeResult as the driver's results name them."""
  return {prefix + "modes": r.modes_captured, prefix + "high_quality": r.high_quality_percent,
          prefix + "reverse_kl": r.reverse_kl, prefix + "median_distance_std": r.median_distance_std,
          prefix + "off_mode": r.off_mode_percent}


def variant_overrides(dataset: str, variant: str, steps: int, extra: dict) -> dict:
  """The config overrides of one run: the dataset and length, the variant's, then `extra`."""
  return {"data.variant": dataset, "train.steps": steps, **VARIANTS[variant], **extra}


def variant_config(overrides: dict):
  """experiments/gan_mixture2d.py with `overrides` (variant_overrides) applied."""
  from jaxgen.config import apply_overrides, load_config_file
  config = load_config_file(HERE / "gan_mixture2d.py")
  apply_overrides(config, overrides)
  return config


def run_variant(dataset: str, variant: str, seeds: list[int], steps: int, root: pathlib.Path,
                eval_every: int, extra: dict, online: bool = False,
                checkpoint_every: int | None = None) -> list[dict]:
  """Every seed of one variant, trained together (jaxgen.train.sweep: the engine's update vmapped
  over seeds), continuing from the variant's sweep checkpoint; seeds on disk at `steps` are skipped."""
  import jax
  from jaxgen.data import builtin
  from jaxgen.errors import CheckpointError
  from jaxgen.metrics import modes
  from jaxgen.train.sweep import SeedSweep
  out = root / dataset / variant
  paths = {s: out / f"seed{s}.json" for s in seeds}
  done = lambda s: paths[s].exists() and json.loads(paths[s].read_text())["steps"] >= steps
  todo = [s for s in seeds if not done(s)]
  if todo:
    overrides = variant_overrides(dataset, variant, steps, extra)
    config = variant_config(overrides)
    centres, std = builtin.toy2d_mode_centres(dataset), builtin.toy2d_mode_std(dataset)
    t0 = time.perf_counter()
    sweep = SeedSweep(config, todo, workdir=out / "sweep")
    resumed_at = int(sweep.step()[0])
    if resumed_at > steps:
      sweep.close()
      raise CheckpointError(f"The sweep checkpoint in {out / 'sweep'} is at step {resumed_at}, past "
                            f"--steps {steps}; ask for at least {resumed_at} steps, or use another --root.")
    # What an earlier, interrupted or shorter run of this sweep measured up to its checkpoint.
    progress = json.loads((out / "progress.json").read_text()) if (out / "progress.json").exists() else {}
    earlier_seconds = progress.pop("train_seconds", 0.0) if resumed_at else 0.0
    sample = jax.jit(lambda p, m, k: sweep.method.sample(p, m, k, NUM_SAMPLES))
    # The online weights sample with the running BatchNorm averages gathered with them.
    sample_online = jax.jit(lambda p, m, k: sweep.method.sample(p, m, k, NUM_SAMPLES, batch_norm="running"))
    history = {s: [h for h in progress.get(f"seed{s}", []) if h["step"] <= resumed_at] for s in todo}
    last = {}  # seed -> (samples, ModeResult, final metrics) at the latest measurement

    def evaluate(step, states, metrics):
      for i, s in enumerate(todo):
        st = sweep.seed_view(i)
        x = np.asarray(sample(st.ema_params, st.mutable, jax.random.PRNGKey(1000 + s)))
        r = modes.mode_coverage(x, centres, std)
        entry = {"step": step, **mode_fields(r)}
        if online:
          o = modes.mode_coverage(np.asarray(sample_online(st.params, st.mutable, jax.random.PRNGKey(1000 + s))),
                                  centres, std)
          entry.update(mode_fields(o, "online_"))
        history[s] = [h for h in history[s] if h["step"] != step] + [entry]
        last[s] = (x, r, {k: float(v[i, -1]) for k, v in metrics.items()})
      # Progress as it comes, and on disk, so a run stopped before the end keeps its measurements.
      print(f"{dataset} {variant} step {step}: " + ", ".join(
          f"seed {s} {history[s][-1]['modes']} modes {history[s][-1]['high_quality']:.1f}% HQ"
          for s in todo), flush=True)
      out.mkdir(parents=True, exist_ok=True)
      (out / "progress.json").write_text(json.dumps(
          {f"seed{s}": history[s] for s in todo} | {"train_seconds": seconds_so_far()}) + "\n")

    seconds_so_far = lambda: round(earlier_seconds + time.perf_counter() - t0, 1)
    if resumed_at >= steps:  # trained that far already: measure the checkpointed states
      evaluate(resumed_at, sweep.states, {})
    sweep.run(steps, every=eval_every, callback=evaluate,
              checkpoint_every=eval_every if checkpoint_every is None else checkpoint_every)
    sweep.close()
    seconds = seconds_so_far()
    out.mkdir(parents=True, exist_ok=True)
    for s, (x, r, final) in last.items():
      result = {"dataset": dataset, "variant": variant, "seed": s, "steps": steps,
                "overrides": overrides, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                **mode_fields(r), "num_modes": r.num_modes,
                "histogram": list(r.histogram), "history": history[s],
                "train_seconds_all_seeds": round(seconds, 1), "seeds_trained_together": len(todo),
                "final_metrics": final}
      np.save(out / f"seed{s}_samples.npy", x.astype(np.float32))
      paths[s].write_text(json.dumps(result, indent=1) + "\n")
  return [json.loads(paths[s].read_text()) for s in seeds]


def mean_se(values) -> tuple[float, float]:
  v = np.asarray(values, np.float64)
  finite = v[np.isfinite(v)]
  if len(finite) == 0:
    return float("inf"), 0.0
  se = float(np.std(finite, ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else 0.0
  return float(np.mean(finite)), se


def table(dataset: str, results: list[dict]) -> str:
  rows = [f"| {dataset} variant | seeds | modes (of {results[0]['num_modes']}) | high quality % | "
          "reverse KL | off mode % | median distance (std) | PacGAN Table 1 | train s (all seeds) |",
          "|---|---|---|---|---|---|---|---|---|"]
  for variant in VARIANTS:
    rs = [r for r in results if r["variant"] == variant]
    if not rs:
      continue
    m, hq, kl = (mean_se([r[k] for r in rs]) for k in ("modes", "high_quality", "reverse_kl"))
    inf = sum(not np.isfinite(r["reverse_kl"]) for r in rs)
    kl_text = f"{kl[0]:.3f} +- {kl[1]:.3f}" + (f" ({inf} runs inf)" if inf else "")
    # Off mode: farther than 6 std from every centre (jaxgen.metrics.modes; absent from older results).
    off = [r["off_mode"] for r in rs if "off_mode" in r]
    off_text = f"{np.mean(off):.1f}" if off else ""
    median = [r["median_distance_std"] for r in rs if "median_distance_std" in r]
    median_text = f"{np.mean(median):.2f}" if median else ""
    pub = PUBLISHED.get(dataset, {}).get(variant)
    pub_text = f"{pub[0]} / {pub[1]}% / {pub[2]}" if pub else ""
    rows.append(f"| {LABELS[variant]} | {len(rs)} | {m[0]:.1f} +- {m[1]:.1f} | {hq[0]:.1f} +- {hq[1]:.1f} | "
                f"{kl_text} | {off_text} | {median_text} | {pub_text} | {max(r.get('train_seconds_all_seeds', 0) for r in rs):.0f} |")
  return "\n".join(rows)


def history_table(dataset: str, results: list[dict], prefix: str = "") -> str:
  """Mean modes / mean high-quality % over the seeds at each measured step (--eval-every); with
  prefix 'online_', those of the online generator (--online)."""
  steps = sorted({h["step"] for r in results for h in r.get("history", [])})
  if not steps:
    return ""
  which = "online generator, " if prefix else ""
  rows = [f"| {dataset} ({which}modes / HQ %) at step | " + " | ".join(str(s) for s in steps) + " |",
          "|---|" + "---|" * len(steps)]
  for variant in VARIANTS:
    rs = [r for r in results if r["variant"] == variant and r.get("history")
          and prefix + "modes" in r["history"][0]]
    if not rs:
      continue
    cells = []
    for step in steps:
      at = [h for r in rs for h in r["history"] if h["step"] == step]
      cells.append(f"{np.mean([h[prefix + 'modes'] for h in at]):.1f} / "
                   f"{np.mean([h[prefix + 'high_quality'] for h in at]):.1f}" if at else "")
    rows.append(f"| {LABELS[variant]} | " + " | ".join(cells) + " |")
  return "\n".join(rows) if len(rows) > 2 else ""


def scatter(dataset: str, root: pathlib.Path, variants: list[str]) -> pathlib.Path | None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from jaxgen.data import builtin
  centres = builtin.toy2d_mode_centres(dataset)
  std = builtin.toy2d_mode_std(dataset)
  rng = np.random.default_rng(0)
  real = centres[rng.integers(len(centres), size=NUM_SAMPLES)] + std * rng.normal(size=(NUM_SAMPLES, 2))
  panels = [(v, root / dataset / v / "seed0_samples.npy") for v in variants]
  panels = [(v, p) for v, p in panels if p.exists()]
  if not panels:
    return None
  # The real data plus one panel per variant, at most three to a row (no empty columns for one variant).
  cols = min(3, len(panels) + 1)
  rows = -(-(len(panels) + 1) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
  lim = 1.5 if dataset == "ring8" else 5.5
  for ax in axes.flat:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
  axes.flat[0].scatter(real[:, 0], real[:, 1], s=1, c="tab:blue")
  axes.flat[0].set_title("real data", fontsize=9)
  for ax, (v, path) in zip(list(axes.flat)[1:], panels):
    x = np.load(path)
    r = json.loads((path.parent / "seed0.json").read_text())
    ax.scatter(real[:, 0], real[:, 1], s=1, c="lightgrey")
    ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:red")
    ax.set_title(f"{LABELS[v]}\n{r['modes']}/{r['num_modes']} modes, {r['high_quality']:.0f}% HQ", fontsize=8)
  for ax in list(axes.flat)[len(panels) + 1:]:
    ax.axis("off")
  fig.tight_layout()
  # Named by its variants: two drivers sharing a root with different --variants keep both plots.
  path = root / f"{dataset}_{'-'.join(v for v, _ in panels)}_scatter.png"
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def rescored(path: pathlib.Path) -> dict:
  """A seed's result, with the diagnostics added to jaxgen.metrics.modes after it was written
  computed from its saved final samples."""
  r = json.loads(path.read_text())
  samples = path.with_name(path.stem + "_samples.npy")
  if "off_mode" not in r and samples.exists():
    from jaxgen.data import builtin
    from jaxgen.metrics import modes
    m = modes.mode_coverage(np.load(samples), builtin.toy2d_mode_centres(r["dataset"]),
                            builtin.toy2d_mode_std(r["dataset"]))
    r |= {k: v for k, v in mode_fields(m).items() if k not in r}
  return r


def parse_overrides(items: list[str]) -> dict:
  """KEY=VALUE pairs (values read as JSON where they parse: numbers, true/false, strings)."""
  out = {}
  for item in items:
    key, _, value = item.partition("=")
    try:
      out[key] = json.loads(value)
    except json.JSONDecodeError:
      out[key] = value
  return out


def use_cpu_devices(n: int) -> None:
  """Makes the CPU platform n XLA devices (jax_num_cpu_devices; it overrides XLA_FLAGS' count). The
  sweep splits its seeds over them, and XLA runs the per-device programs in parallel threads: on
  a few cores this keeps them busier than one program whose small matrix products each spread
  over every core."""
  import jax
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:  # JAX already ran something in this process (a caller of main)
    if len(jax.devices("cpu")) != n:
      from jaxgen.errors import ConfigError
      raise ConfigError(f"--cpu-devices {n}: JAX started before with {len(jax.devices('cpu'))} CPU "
                        "devices; run the script in a fresh process.") from None


YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
CPU_LIBRARY_FUSIONS = ("none", "default")


def use_cpu_library_fusions(kind: str) -> None:
  """kind 'none': XLA:CPU emits every fusion itself instead of handing matrix products, reductions
  and elementwise chains to YNNPACK (an empty XLA_FLAGS list for the flag above). For these sweeps'
  MLPs on 2-d points (matrices of 100-500 rows, the maxout's reductions) that is 1.1-1.4x faster
  on cpu-2c; for convolutional networks YNNPACK's products are faster, so it is not jaxgen's
  default (BENCHMARKS.md, "XLA:CPU's library fusions"). 'default': XLA's own choice. A value the
  user already put in XLA_FLAGS wins. XLA reads XLA_FLAGS once, when JAX starts its backend."""
  if kind not in CPU_LIBRARY_FUSIONS:
    raise ValueError(f"cpu library fusions '{kind}': choose from {', '.join(CPU_LIBRARY_FUSIONS)}")
  flags = os.environ.get("XLA_FLAGS", "")
  if kind == "default" or YNN_FUSION_FLAG in flags:
    return
  try:
    from jax._src.xla_bridge import backends_are_initialized
  except ImportError:  # another JAX: nothing to check against
    backends_are_initialized = lambda: False
  if backends_are_initialized():
    from jaxgen.errors import ConfigError
    raise ConfigError("--cpu-library-fusions none: JAX started its backend before the flag could "
                      "reach XLA; run the script in a fresh process, or pass --cpu-library-fusions "
                      "default.")
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_FUSION_FLAG}=".strip()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--root", required=True)
  p.add_argument("--datasets", default="ring8,grid25")
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--eval-every", type=int, default=0, help="also measure every N steps (kept as 'history')")
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                 help="config overrides for every variant, e.g. train.ema_decay=0")
  p.add_argument("--online", action="store_true", help="with an EMA generator, also measure the "
                 "online one in the history (the training is the same)")
  p.add_argument("--checkpoint-every", type=int, default=None,
                 help="checkpoint each sweep every N steps (default: --eval-every; and at the end)")
  p.add_argument("--report-only", action="store_true", help="only print the table and draw the plots")
  p.add_argument("--cpu-devices", type=int, default=0,
                 help="split the host CPU into N XLA devices (N = --seeds puts one seed on each; "
                      "on 2 cores 1.23x for PacGAN4 + R1, 1.07x for the plain GAN, slower for minibatch discrimination: "
                      "experiments/bench_sweep_devices.py, BENCHMARKS.md); a seed's numbers then "
                      "differ from the one-device run's in the last bits")
  p.add_argument("--cpu-library-fusions", choices=CPU_LIBRARY_FUSIONS, default="none",
                 help="XLA:CPU's YNNPACK fusions: 'none' (the default here) turns them off, 1.1-1.4x "
                      "faster for these MLP sweeps on cpu-2c; 'default' keeps XLA's, as the runs "
                      "BENCHMARKS.md recorded before this option had them (to rerun one bit for bit)")
  args = p.parse_args(argv)
  from jaxgen.errors import UserError
  try:
    use_cpu_library_fusions(args.cpu_library_fusions)
    if args.cpu_devices:
      use_cpu_devices(args.cpu_devices)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  root = pathlib.Path(args.root)
  datasets = [d for d in args.datasets.split(",") if d]
  variants = [v for v in args.variants.split(",") if v]
  for v in variants:
    if v not in VARIANTS:
      p.error(f"unknown variant '{v}'; choose from {', '.join(VARIANTS)}")
  if not args.report_only:
    for dataset in datasets:
      for variant in variants:
        try:
          results = run_variant(dataset, variant, list(range(args.seeds)), args.steps, root,
                                args.eval_every, parse_overrides(args.set), args.online,
                                args.checkpoint_every)
        except UserError as e:  # a config or checkpoint that does not fit: the message says why
          print(f"error: {e}", file=sys.stderr)
          return 2
        for r in results:
          print(f"{dataset} {variant} seed {r['seed']}: {r['modes']}/{r['num_modes']} modes, "
                f"{r['high_quality']:.1f}% HQ, KL {r['reverse_kl']:.3f}", flush=True)
  for dataset in datasets:
    results = [rescored(f) for v in variants for f in sorted((root / dataset / v).glob("seed*.json"))]
    if results:
      print(table(dataset, results) + "\n")
      for prefix in ("", "online_"):
        history = history_table(dataset, results, prefix)
        if history:
          print(history + "\n")
      picture = scatter(dataset, root, variants)
      if picture:
        print(f"wrote {picture}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
