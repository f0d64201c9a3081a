"""The body of `jaxgen eval` (argument parsing lives in jaxgen.cli)."""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.metrics import evaluate
from jaxgen.metrics.features import extract_all


def _metrics(values: list[str]) -> list[str]:
  names = [m.strip() for v in values for m in v.split(",") if m.strip()]
  for m in names:
    if m not in evaluate.METRICS:
      raise ConfigError(f"Unknown metric '{m}'. Choose from {', '.join(evaluate.METRICS)}.")
  return list(dict.fromkeys(names))


def run(args, overrides) -> int:
  from jaxgen.cli import check_sampling_options, load_config, restore_run, sampling_kwargs
  from jaxgen.metrics.domain import cache_dir
  if overrides:
    raise ConfigError(f"jaxgen eval takes no config overrides, got {overrides[0]}.")
  metrics = _metrics(args.metric)
  if args.num < 2:
    raise ConfigError("--num must be at least 2.")
  log = lambda msg: print(msg, file=sys.stderr)
  progress = not args.no_progress
  cache = pathlib.Path(args.cache_dir).expanduser() if args.cache_dir else cache_dir()

  state = trainer = step = params = None
  if args.workdir:
    trainer, state, params, step = restore_run(args.workdir, args.params)
    config = trainer.config
    if config.data.name == "couplings":
      # A reflow / distillation run is judged against the real data its couplings came from.
      from jaxgen.data.couplings import original_data
      config = config.copy_and_resolve_references()
      config.data = original_data(config.data)
  elif args.config:
    config = load_config(args.config, [])
    if not args.samples or set(metrics) & {"bpd", "straightness"}:
      raise ConfigError("With --config (no --workdir) give --samples FILE.npz; bpd and "
                        "straightness need --workdir.")
  else:
    raise ConfigError("Give --workdir DIR (a training run), or --config FILE with --samples FILE.npz.")

  results: dict = {"workdir": args.workdir, "step": step, "params": args.params,
                   "dataset": config.data.name, "metrics": {}}
  model_metrics = ("bpd", "straightness")  # computed from the model, not from samples
  sample_metrics = [m for m in metrics if m not in model_metrics]
  sample_labels = None  # the class each generated sample was conditioned on, if any
  if sample_metrics:
    if args.samples:
      samples = evaluate.load_samples(args.samples)
      results["samples"] = args.samples
    else:
      sample_kwargs = sampling_kwargs(args, args.batch)
      num_classes = config.model.get("num_classes", 0) if "model" in config else 0
      if num_classes and "labels" not in sample_kwargs:
        from jaxgen.diffusion.method import default_labels
        sample_kwargs["labels"] = default_labels(args.batch, num_classes)
      method = trainer.method
      check_sampling_options(method.sample, method.name, sample_kwargs)
      fn = jax.jit(lambda p, m, k: method.sample(p, m, k, args.batch, **sample_kwargs))
      samples, seconds = evaluate.timed(evaluate.generate, lambda k: fn(params, state.mutable, k),
                                        args.num, args.batch, args.seed, progress)
      results.update(seed=args.seed, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                     eta=args.eta, grid=args.grid, batch_norm=args.batch_norm,
                     sampling_seconds=round(seconds, 2))
      if "labels" in sample_kwargs:  # every batch is conditioned on the same labels
        sample_labels = np.tile(np.asarray(sample_kwargs["labels"]),
                                -(-args.num // args.batch))[:len(samples)]
    results["num_samples"] = len(samples)

    feature_metrics = [m for m in sample_metrics if m != "modes"]
    if feature_metrics:
      network = evaluate.default_network(config.data, args.features,
                                         inception_weights=args.inception_weights, log=log)
      ref = evaluate.reference(config.data, network, split=args.ref_split, limit=args.ref_num,
                               cache=cache, progress=progress)
      bar = evaluate.progress_bar(len(samples), "sample features", progress)
      sample_out = extract_all(network, samples, bar)
      bar.close()
      results.update(features=network.name, feature_digest=network.digest,
                     feature_network_info=network.info,
                     reference={"split": ref.split, "count": ref.stats.count,
                                "content_digest": ref.content_digest, "cached": ref.cached})
      for m in feature_metrics:
        results["metrics"].update(evaluate.image_metrics(m, sample_out, ref, network))
      if sample_labels is not None and "probs" in sample_out:
        # How often the domain classifier agrees with the class a sample was conditioned on.
        results["metrics"]["label_accuracy"] = float(
            np.mean(np.argmax(sample_out["probs"], axis=-1) == sample_labels))
    if "modes" in sample_metrics:
      results["metrics"].update(evaluate.mode_metrics(samples.reshape(len(samples), -1), config.data))

  if "bpd" in metrics:
    from jaxgen.metrics.likelihood import evaluate_bpd
    results["metrics"].update(evaluate_bpd(trainer.method, params, state.mutable, config,
                                           num=args.num, batch=args.batch, seed=args.seed,
                                           progress=progress))

  if "straightness" in metrics:
    from jaxgen.flow.reflow import measure_straightness
    results["metrics"].update(measure_straightness(trainer.method, params, config, num=args.num,
                                                   batch=min(args.batch, args.num),
                                                   steps=args.steps or 100, seed=args.seed))

  title = (f"jaxgen eval: {args.workdir or args.samples} (step {step}, {args.params} params)"
           if step is not None else f"jaxgen eval: {args.samples}")
  print(evaluate.format_table(title, results["metrics"]))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
  return 0


def _jsonable(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(type(x))
