"""Benchmarks: `jaxgen bench train` (the compiled train step) and `jaxgen bench conv` (conv impls).

Figures are medians over repeated timed calls after warm-up; FLOP/s is XLA's cost-analysis FLOP count
of the compiled step divided by the measured time, and is quoted against this machine's dense-matmul
peak measured in the same process.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def _time_calls(fn, repeats: int, warmup: int = 2) -> list[float]:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
  """The median wall time of `fn()` (blocked until ready) over `repeats` calls after `warmup`."""
  return statistics.median(_time_calls(fn, repeats, warmup))


def matmul_peak_flops(n: int = 2048, repeats: int = 7) -> float:
  """Achieved FLOP/s of a jitted f32 n x n matmul: the machine's practical dense peak."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  return 2 * n ** 3 / statistics.median(_time_calls(lambda: f(a, b), repeats))


def compiled_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis:
    return None
  return float(analysis.get("flops", 0.0)) or None


def peak_host_memory_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def machine_description() -> str:
  devs = jax.devices()
  return f"{platform.node()}: {len(devs)} x {devs[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}"


def bench_train(config, *, repeats: int = 5, workdir=None) -> dict:
  """Compile time, steps/s, images/s, FLOP/s of the config's train step (data already on device)."""
  from jaxgen.train import step as step_lib
  from jaxgen.train.loop import Trainer
  trainer = Trainer(config, workdir or "/tmp/jaxgen-bench-unused", progress=False)
  state = trainer.init_state()
  iterator = trainer.make_data_iterator()
  batches = trainer.next_batches(iterator)
  t0 = time.perf_counter()
  compiled = step_lib.compile_train_step(trainer.update, trainer.mesh, state, batches, donate=False)
  compile_s = time.perf_counter() - t0
  # XLA's cost analysis counts a loop body once, so FLOPs come from a one-step compile.
  one_step = step_lib.compile_train_step(trainer.update, trainer.mesh, state,
                                         jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype), batches),
                                         donate=False)
  flops = compiled_flops(one_step)
  times = _time_calls(lambda: compiled(state, batches)[1]["loss"], repeats)
  per_call = statistics.median(times)
  k = config.train.steps_per_call
  steps_per_s = k / per_call
  peak = matmul_peak_flops()
  achieved = flops * k / per_call if flops else None
  # Input pipeline throughput, measured separately: the loop overlaps it with compute.
  t0 = time.perf_counter()
  for _ in range(5):
    trainer.next_batches(iterator)
  data_steps_per_s = 5 * k / (time.perf_counter() - t0)
  return {
      "machine": machine_description(),
      "compile_s": compile_s,
      "steps_per_call": k,
      "batch_size": config.train.batch_size,
      "step_time_ms_median": 1000 * per_call / k,
      "step_time_ms_all": [1000 * t / k for t in times],
      "steps_per_s": steps_per_s,
      "images_per_s": steps_per_s * config.train.batch_size,
      "flops_per_step": flops,
      "achieved_flops_per_s": achieved,
      "matmul_peak_flops_per_s": peak,
      "fraction_of_peak": achieved / peak if achieved else None,
      "data_pipeline_steps_per_s": data_steps_per_s,
      "peak_host_memory_mb": peak_host_memory_mb(),
  }


def bench_conv(batch: int = 64, size: int = 32, channels: int = 64, repeats: int = 5) -> dict:
  """Forward and forward+backward time of a 3x3 conv layer per implementation, side by side."""
  from jaxgen.nn.layers import Conv2D
  x = jax.random.normal(jax.random.key(0), (batch, size, size, channels))
  out = {"machine": machine_description(), "shape": [batch, size, size, channels]}
  for impl in ("xla", "im2col"):
    layer = Conv2D(channels, impl=impl)
    params = layer.init(jax.random.key(1), x)
    fwd = jax.jit(lambda p, x: layer.apply(p, x))
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))
    out[impl] = {
        "forward_ms": 1000 * statistics.median(_time_calls(lambda: fwd(params, x), repeats)),
        "forward_backward_ms": 1000 * statistics.median(_time_calls(lambda: grad(params, x), repeats)),
    }
  out["im2col_speedup_fwd_bwd"] = out["xla"]["forward_backward_ms"] / out["im2col"]["forward_backward_ms"]
  return out


def format_report(result: dict) -> str:
  return json.dumps(result, indent=2, default=lambda x: float(x) if isinstance(x, np.floating) else str(x))


def bench_features(networks: list[str], batch: int, repeats: int, data_cfg=None) -> dict:
  """Feature-extraction throughput (images/s) of feature networks under jit, at a fixed batch.

  domain-digits / domain-shapes use the cached (or freshly trained) classifiers; inception uses
  random weights of the exact architecture (throughput does not depend on the values). Inputs are
  the resolution each network is fed in practice: 8x8x1 digits, 32x32x3 shapes, and 32x32x3 images
  resized to 299x299 for Inception (the resize is part of the timed function). Also times the
  reference-statistics cache: the first call computes, the second reads the npz."""
  import pathlib
  import tempfile

  from jaxgen.data import data_config
  from jaxgen.metrics import domain, evaluate, inception
  from jaxgen.metrics.features import FeatureNetwork

  results: dict = {"device": jax.devices()[0].device_kind, "platform": platform.platform(),
                   "batch": batch, "repeats": repeats, "networks": {}}
  for name in networks:
    if name in ("domain-digits", "domain-shapes"):
      dataset = name.split("-")[1]
      net = domain.domain_network(data_config(name=dataset), batch_size=batch)
      shape = (batch, 8, 8, 1) if dataset == "digits" else (batch, 32, 32, 3)
    elif name == "inception":
      rng = np.random.default_rng(0)
      variables = jax.tree.map(lambda s: (0.01 * rng.standard_normal(s.shape)).astype(np.float32),
                               inception.variable_shapes())
      model = inception.FIDInceptionV3()
      run = jax.jit(lambda x: model.apply(variables, inception.to_inception_input(x))["pool_3"])
      net = FeatureNetwork("inception", 2048, "random", lambda x: {"features": np.asarray(run(x))},
                           batch_size=batch)
      shape = (batch, 32, 32, 3)
    else:
      raise ValueError(f"unknown network '{name}' (domain-digits, domain-shapes, inception)")
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    t0 = time.perf_counter()
    net.extract(x)
    first = time.perf_counter() - t0
    times = _time_calls(lambda: net.extract(x), repeats, warmup=1)
    med = statistics.median(times)
    results["networks"][name] = {"first_call_s": round(first, 3), "batch_s_median": round(med, 4),
                                 "images_per_s": round(batch / med, 1),
                                 "batch_s_all": [round(t, 4) for t in times]}
  if "domain-digits" in networks:
    net = domain.domain_network(data_config(name="digits"), batch_size=batch)
    cfg = data_config(name="digits", image_size=8, channels=1)
    with tempfile.TemporaryDirectory() as tmp:
      t0 = time.perf_counter()
      evaluate.reference(cfg, net, cache=pathlib.Path(tmp), progress=False)
      computed = time.perf_counter() - t0
      t0 = time.perf_counter()
      ref = evaluate.reference(cfg, net, cache=pathlib.Path(tmp), progress=False)
      cached = time.perf_counter() - t0
    results["reference_digits_train"] = {"compute_s": round(computed, 3), "cached_s": round(cached, 4),
                                         "count": ref.stats.count, "was_cached": ref.cached}
  return results
