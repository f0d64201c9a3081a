"""`jaxgen train | sample | eval | reflow | info | bench`.

Errors a user can fix (UserError: bad config, data, checkpoint, a non-finite loss) are printed as one
paragraph and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from jaxgen.errors import ConfigError, UserError
from jaxgen.train.runs import load_run, restore_run  # noqa: F401  (also used by eval and scripts)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="jaxgen", description="Generative image models in JAX.")
  sub = p.add_subparsers(dest="command", required=True)

  train = sub.add_parser("train", help="train from a config file (resumes from WORKDIR's checkpoints)")
  train.add_argument("--config", required=True, help="experiments/<name>.py defining get_config()")
  train.add_argument("--workdir", required=True)
  train.add_argument("--coordinator", help="HOST:PORT of process 0 for a multi-process run")
  train.add_argument("--num-processes", type=int)
  train.add_argument("--process-id", type=int)
  train.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
  train.add_argument("--allow-config-change", action="store_true",
                     help="continue WORKDIR's checkpoint under a config it was not trained with "
                          "(refused otherwise, but for train.steps, logging and checkpoint cadence, "
                          "sampling settings, and learning-rate schedules that agree on the steps taken)")

  sample = sub.add_parser("sample", help="sample a grid from WORKDIR's latest checkpoint")
  sample.add_argument("--workdir", required=True)
  sample.add_argument("--num", type=int, default=64)
  sample.add_argument("--seed", type=int, default=0)
  sample.add_argument("--out", default="samples.png")
  sample.add_argument("--params", choices=("ema", "online"), default="ema")
  sample.add_argument("--npz", help="also write the samples as float32 NHWC in [-1, 1] to this .npz")
  sample.add_argument("--trajectory", help="also write the denoising trajectory as this animated GIF "
                                           "and a PNG strip beside it (same name, .png)")
  sample.add_argument("--trajectory-frames", type=int, default=40,
                      help="about this many frames in the GIF")
  sample.add_argument("--interpolate", type=int, metavar="COLS",
                      help="GANs: a latent interpolation grid instead, --num / COLS rows of COLS "
                           "images, each row a path between two latents")
  add_sampling_arguments(sample)

  ev = sub.add_parser("eval", help="metrics of WORKDIR's latest checkpoint (or of an npz of samples)")
  ev.add_argument("--workdir", help="a training run (its config names the dataset)")
  ev.add_argument("--config", help="a config file instead of --workdir (with --samples)")
  ev.add_argument("--metric", action="append", required=True,
                  help="fd, kid, pr, modes, bpd or straightness (flows; --steps Euler steps, default 100); repeat or comma-separate for several")
  ev.add_argument("--num", type=int, default=2500, help="samples to generate (or test examples for bpd)")
  ev.add_argument("--samples", help="an .npz with 'samples' (float32 in [-1, 1]) instead of sampling")
  add_sampling_arguments(ev)
  ev.add_argument("--seed", type=int, default=0)
  ev.add_argument("--batch", type=int, default=250, help="samples per compiled sampling call")
  ev.add_argument("--params", choices=("ema", "online"), default="ema")
  ev.add_argument("--features", default="auto",
                  help="auto (points for toy2d, domain classifier for digits/shapes, else inception), "
                       "domain, inception or points")
  ev.add_argument("--inception-weights", help="FID Inception weights (.npz or .safetensors); "
                  "default $JAXGEN_INCEPTION_WEIGHTS")
  ev.add_argument("--ref-split", default="train", help="dataset split of the reference statistics")
  ev.add_argument("--ref-num", type=int, default=50000, help="at most this many reference examples")
  ev.add_argument("--cache-dir", help="default $JAXGEN_CACHE_DIR or ~/.cache/jaxgen")
  ev.add_argument("--json", help="write the results to this JSON file")
  ev.add_argument("--no-progress", action="store_true")

  rf = sub.add_parser("reflow", help="write (noise, sample) couplings of a trained rectified flow "
                                      "as a dataset for the next flow (resumes an unfinished one)")
  rf.add_argument("--workdir", required=True, help="the trained rectified-flow run")
  rf.add_argument("--out", required=True, help="the coupling dataset's directory (data.path)")
  rf.add_argument("--num", type=int, required=True, help="couplings to write")
  rf.add_argument("--sampler", help="ODE integrator (default: the run's sample.sampler)")
  rf.add_argument("--steps", type=int, help="its steps (default: the run's sample.steps)")
  rf.add_argument("--guidance", type=float, help="classifier-free guidance scale (conditional runs)")
  rf.add_argument("--seed", type=int, default=0)
  rf.add_argument("--shard-size", type=int, default=0, help="couplings per shard (default 1000 "
                                                            "points or 250 images)")
  rf.add_argument("--params", choices=("ema", "online"), default="ema")

  info = sub.add_parser("info", help="parameter counts of a config's model (no allocation)")
  info.add_argument("--config", required=True)
  info.add_argument("--show-config", action="store_true", help="also print every config key")

  bench = sub.add_parser("bench", help="benchmarks")
  bench_sub = bench.add_subparsers(dest="bench_command", required=True)
  bt = bench_sub.add_parser("train", help="compile time and speed of a config's train step")
  bt.add_argument("--config", required=True)
  bt.add_argument("--repeats", type=int, default=5)
  bt.add_argument("--json", help="write the figures to this JSON file")
  bc = bench_sub.add_parser("conv", help="3x3 conv implementations, forward and backward")
  bc.add_argument("--batch", type=int, default=64)
  bc.add_argument("--size", type=int, default=32)
  bc.add_argument("--channels", type=int, default=64)
  bc.add_argument("--json")
  bs = bench_sub.add_parser("samplers", help="every sampler on Gaussian mixtures with exact "
                                              "denoisers: error vs NFE, speed, overhead")
  bs.add_argument("--problems", default="ring2d,mix64")
  bs.add_argument("--samplers", help="comma-separated (default: all)")
  bs.add_argument("--nfe", default="5,10,20,50,100,250")
  bs.add_argument("--grids", default="karras,logsnr", help="noise grids to run: karras (EDM, rho 7), "
                                                           "logsnr (uniform in log sigma)")
  bs.add_argument("--num", type=int, help="samples per problem (default: 4000 in 2D, 2000 in 64D)")
  bs.add_argument("--repeats", type=int, default=5)
  bs.add_argument("--overhead-config", default="experiments/ddpm_digits.py",
                  help="the U-Net config of the overhead measurement ('' to skip it)")
  bs.add_argument("--batch", type=int, default=64, help="batch of the overhead measurement")
  bs.add_argument("--plot", help="write the NFE-vs-error plot to this PNG")
  bs.add_argument("--json")
  bf = bench_sub.add_parser("features", help="feature-network throughput (images/s) under jit")
  bf.add_argument("--networks", default="domain-digits,domain-shapes,inception")
  bf.add_argument("--batch", type=int, default=100)
  bf.add_argument("--repeats", type=int, default=5)
  bf.add_argument("--json")
  return p


def load_config(path: str, overrides: list[str]):
  from jaxgen import config as config_lib
  config = config_lib.load_config_file(path)
  config_lib.apply_overrides(config, config_lib.parse_override_args(overrides))
  return config


def cmd_train(args, overrides) -> int:
  # Join the multi-process run before anything initialises a JAX backend.
  from jaxgen.train.distributed import maybe_initialize
  config = load_config(args.config, overrides)
  from jaxgen import config as config_lib
  config_lib.validate_common(config)
  from jaxgen.method import validate_method_config
  validate_method_config(config)
  maybe_initialize(args.coordinator, args.num_processes, args.process_id)
  from jaxgen.train.loop import train
  result = train(config, args.workdir, progress=False if args.no_progress else None,
                 allow_config_change=args.allow_config_change)
  if result.stopped_by_signal:
    print(f"Stopped by a signal at step {result.final_step}; a checkpoint was saved. Run the same "
          "command again to resume.", file=sys.stderr)
  else:
    print(f"Trained to step {result.final_step} (started at {result.start_step}). "
          f"Last metrics: {json.dumps(result.last_metrics)}")
  return 0


def add_sampling_arguments(parser) -> None:
  parser.add_argument("--sampler", help="sampler name (default: the method's own)")
  parser.add_argument("--steps", type=int, help="sampler steps (default: the config's sample.steps)")
  parser.add_argument("--guidance", type=float,
                      help="classifier-free guidance scale w (class-conditional models; default: "
                           "the config's sample.guidance)")
  parser.add_argument("--grid", choices=("timesteps", "karras", "logsnr"),
                      help="noise grid: a subsequence of the model's timesteps, EDM's rho spacing, or "
                           "uniform in log sigma (default: the config's sample.grid)")
  parser.add_argument("--eta", type=float,
                      help="noise of ddim / euler_ancestral / dpmpp_*_sde (default: the config's sample.eta)")
  parser.add_argument("--labels", help="comma-separated class labels, each for an equal block of "
                                       "the samples (default: every class in turn)")
  parser.add_argument("--truncation", type=float,
                      help="StyleGAN's truncation psi (default: the config's sample.truncation)")
  parser.add_argument("--batch-norm", dest="batch_norm", choices=("running", "batch", "standing"),
                      help="GANs with BatchNorm in the generator: the running averages, the sampled "
                           "batch's own statistics, or standing statistics recomputed for the weights "
                           "sampled from (default: the config's sample.batch_norm)")


SAMPLING_FLAGS = ("sampler", "steps", "guidance", "eta", "grid", "truncation", "batch_norm", "labels")


def sampling_kwargs(args, num: int) -> dict:
  """The keyword arguments of Method.sample that the command line sets."""
  import jax.numpy as jnp
  kwargs = {k: getattr(args, k) for k in SAMPLING_FLAGS if k != "labels" and getattr(args, k) is not None}
  if args.labels:
    try:
      labels = [int(v) for v in args.labels.split(",")]
    except ValueError:
      raise ConfigError(f"--labels takes comma-separated integers, not '{args.labels}'.") from None
    kwargs["labels"] = jnp.asarray([labels[i * len(labels) // num] for i in range(num)], jnp.int32)
  return kwargs


def check_sampling_options(fn, method_name: str, kwargs: dict) -> None:
  """Refuse command-line sampling options that `fn` (the method's sample or interpolate) does not
  take, naming them, rather than failing inside it with a TypeError."""
  import inspect
  params = inspect.signature(fn).parameters
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    return  # the method checks its own options
  unknown = [k for k in kwargs if k not in params]
  if unknown:
    flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
    raise ConfigError(f"{flags}: method '{method_name}' samples without "
                      f"{'this option' if len(unknown) == 1 else 'these options'}; its options are "
                      f"{', '.join('--' + k for k in params if k in SAMPLING_FLAGS) or 'none'}.")


def write_interpolation(args, trainer, state, params, step, kwargs) -> int:
  import jax
  from jaxgen import images
  from jaxgen.train.loop import to_host
  method = trainer.method
  cols = args.interpolate
  if method.interpolate is None:
    raise ConfigError(f"--interpolate: method '{method.name}' has no latent interpolation.")
  if cols < 2 or args.num % cols:
    raise ConfigError(f"--interpolate COLS needs COLS >= 2 dividing --num ({args.num}), got {cols}.")
  rows = args.num // cols
  fn = jax.jit(lambda p, m, k: method.interpolate(p, m, k, rows, cols, **kwargs))
  samples = to_host(fn(params, state.mutable, jax.random.PRNGKey(args.seed)))
  images.save_grid(samples, args.out, nrow=cols)
  print(f"Wrote a {rows} x {cols} latent interpolation grid from step {step} ({args.params} params, "
        f"seed {args.seed}) to {args.out}.")
  return 0


def cmd_sample(args, overrides) -> int:
  import jax
  import numpy as np
  from jaxgen import images
  from jaxgen.train.loop import to_host
  if overrides:
    raise ConfigError(f"jaxgen sample takes no config overrides, got {overrides[0]}.")
  trainer, state, params, step = restore_run(args.workdir, args.params)
  kwargs = sampling_kwargs(args, args.num)
  method = trainer.method
  if args.interpolate is not None:
    if method.interpolate is not None:
      check_sampling_options(method.interpolate, method.name, kwargs)
    return write_interpolation(args, trainer, state, params, step, kwargs)
  check_sampling_options(method.sample, method.name, kwargs)
  config = trainer.config
  if args.trajectory and config.method == "gan":
    raise ConfigError("--trajectory: a GAN draws a sample in one generator call, with no "
                      "trajectory; use --interpolate COLS for a latent interpolation grid.")
  if args.trajectory:
    steps = args.steps or config.sample.get("steps", 0) or config.diffusion.num_timesteps
    kwargs["trajectory_every"] = max(1, steps // max(1, args.trajectory_frames))
  fn = jax.jit(lambda p, m, k: trainer.method.sample(p, m, k, args.num, **kwargs))
  t0 = time.perf_counter()
  out = fn(params, state.mutable, jax.random.PRNGKey(args.seed))
  samples, frames = (to_host(out[0]), to_host(out[1])) if args.trajectory else (to_host(out), None)
  elapsed = time.perf_counter() - t0
  # A class-conditional grid gets one row per class (labels come in equal blocks).
  num_classes = trainer.config.model.get("num_classes", 0)
  per_class = args.num // num_classes if num_classes and not args.labels else 0
  nrow = per_class if per_class and per_class * num_classes == args.num else None
  images.save_grid(samples, args.out, nrow=nrow)
  if args.npz:
    np.savez(args.npz, samples=samples.astype(np.float32))
  if args.trajectory:
    gif, strip = images.save_trajectory(frames, args.trajectory, nrow=nrow)
    print(f"Wrote the trajectory ({len(frames)} frames) to {gif} and {strip}.")
  print(f"Wrote {args.num} samples from step {step} ({args.params} params, seed {args.seed}) to "
        f"{args.out} in {elapsed:.1f}s (including compilation).")
  return 0


def cmd_reflow(args, overrides) -> int:
  from jaxgen.flow import reflow
  if overrides:
    raise ConfigError(f"jaxgen reflow takes no config overrides, got {overrides[0]}.")
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  result = reflow.write_couplings(args.workdir, args.out, args.num, sampler=args.sampler,
                                  steps=args.steps, guidance=args.guidance, seed=args.seed,
                                  shard_size=args.shard_size, which_params=args.params, log=log)
  print(f"Wrote {result['shards_written']} of {result['shards_total']} shards "
        f"({result['already_present']} were already there) of {args.num} couplings to {args.out} "
        f"in {result['seconds']}s ({result['sampler']}, {result['steps']} steps). Train on them with "
        f"--config.data.name=couplings --config.data.path={args.out}.")
  return 0


def cmd_eval(args, overrides) -> int:
  from jaxgen.metrics import eval_cli
  return eval_cli.run(args, overrides)


def cmd_info(args, overrides) -> int:
  import jax
  import numpy as np
  from jaxgen.method import build_method
  config = load_config(args.config, overrides)
  method = build_method(config)
  shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0))["params"]
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  print(f"{config.method} / {config.model.name}: {total:,} parameters")
  for name, sub in shapes.items():
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(sub))
    print(f"  {name:<28s} {n:>12,}")
  if args.show_config:
    from jaxgen.config import flatten
    for k, v in sorted(flatten(config).items()):
      print(f"{k} = {v!r}")
  return 0


def cmd_bench(args, overrides) -> int:
  from jaxgen import bench
  if args.bench_command == "train":
    config = load_config(args.config, overrides)
    result = bench.bench_train(config, repeats=args.repeats)
    result["config"] = args.config
    result["overrides"] = overrides
  elif args.bench_command == "features":
    result = bench.bench_features(args.networks.split(","), args.batch, args.repeats)
  elif args.bench_command == "samplers":
    return _bench_samplers(args)
  else:
    result = bench.bench_conv(args.batch, args.size, args.channels)
  text = bench.format_report(result)
  print(text)
  if args.json:
    pathlib.Path(args.json).write_text(text + "\n")
  return 0


def _bench_samplers(args) -> int:
  import jax.numpy as jnp
  from jaxgen import bench
  from jaxgen.samplers import benchmark, registry
  problems = [p for p in args.problems.split(",") if p]
  samplers = (args.samplers.split(",") if args.samplers else
              [n for n in registry.SAMPLERS if n not in registry.MODEL_SPECIFIC])
  try:
    nfes = [int(v) for v in args.nfe.split(",")]
  except ValueError:
    raise ConfigError(f"--nfe takes comma-separated integers, not '{args.nfe}'.") from None
  for name in problems:
    if name not in benchmark.PROBLEMS:
      raise ConfigError(f"--problems: unknown problem '{name}'; choose from "
                        f"{', '.join(benchmark.PROBLEMS)}.")
  for name in samplers:
    if registry.ALIASES.get(name, name) not in registry.SAMPLERS:
      raise ConfigError(f"--samplers: unknown sampler '{name}'; choose from {', '.join(registry.SAMPLERS)}.")
  report = lambda problem, r: print(f"  {problem} {r['sampler']:<16s} NFE {r['nfe']:>3d}  sw {r['sw']:.4f}  "
                                    f"ode_err {r['ode_err'] if r['ode_err'] is None else format(r['ode_err'], '.2e')}  "
                                    f"wall {r['wall_s'] * 1e3:.2f} ms", flush=True)
  grid_kinds = [g for g in args.grids.split(",") if g]
  for kind in grid_kinds:
    if kind not in benchmark.GRIDS:
      raise ConfigError(f"--grids: unknown grid '{kind}'; choose from {', '.join(benchmark.GRIDS)}.")
  results = [benchmark.bench_problem(p, samplers, nfes, grid=g, repeats=args.repeats, num=args.num,
                                     progress=report) for g in grid_kinds for p in problems]
  out = {"machine": bench.machine_description(), "problems": results}
  text = "\n\n".join(benchmark.format_table(r) for r in results)
  # The scan against a Python loop of jitted steps: on a tiny model (the 2D mixture's exact
  # denoiser, dispatch-bound) and on a real one (the U-Net of --overhead-config).
  mixture = benchmark.PROBLEMS["ring2d"][0]()
  out["overhead_mixture"] = benchmark.bench_overhead(
      lambda x, s: mixture.denoise(x, s), benchmark.SIGMA_MAX * jnp.ones((256, 2)), repeats=args.repeats)
  out["overhead_mixture"]["config"] = "the ring2d mixture's exact denoiser"
  text += "\n\n" + benchmark.format_overhead(out["overhead_mixture"])
  if args.overhead_config:
    denoise, x_start = benchmark.unet_denoiser(args.overhead_config, args.batch)
    out["overhead"] = benchmark.bench_overhead(denoise, x_start, repeats=args.repeats)
    out["overhead"]["config"] = args.overhead_config
    text += "\n\n" + benchmark.format_overhead(out["overhead"])
  print(text)
  if args.plot and results:
    benchmark.plot(results, args.plot)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
  return 0


def main(argv: list[str] | None = None) -> int:
  args, rest = _parser().parse_known_args(argv)
  handlers = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "info": cmd_info,
              "bench": cmd_bench, "reflow": cmd_reflow}
  try:
    return handlers[args.command](args, rest)
  except UserError as e:
    print(f"jaxgen {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
