"""How fast a seed sweep of the mode-collapse benchmark trains with its seeds on one XLA CPU device
or split over several (`--cpu-devices` of experiments/gan_mode_collapse.py).

    python experiments/bench_sweep_devices.py [--variants pacgan3,non_saturating] [--dataset grid25]
        [--seeds 5] [--devices 1,5] [--rounds 2] [--calls 4] [--steps-per-call 100]
        [--set gan.r1_gamma=0.1 ...] [--cpu-library-fusions none,default]

Each (variant, device count) is timed in its own process, since the device count is fixed when
JAX starts: the sweep is built, one call of --steps-per-call steps warms it up (compile), then
--calls calls are timed and their median kept. The device counts alternate within each of
--rounds rounds, so a drift in the machine's speed falls on all of them alike. Reported: the
median over rounds of the seconds per 100 steps (all seeds together) and its ratio to the first
device count's, measured in the same run. With several --cpu-library-fusions settings (XLA:CPU's
YNNPACK fusions, see gan_mode_collapse.use_cpu_library_fusions) each is timed at each device
count in the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent

_MEASURE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import gan_mode_collapse as driver
args = json.loads(sys.argv[2])
driver.use_cpu_library_fusions(args["fusions"])  # before JAX starts
driver.use_cpu_devices(args["devices"])
import jax
from jaxgen.train.sweep import SeedSweep
config = driver.variant_config(driver.variant_overrides(args["dataset"], args["variant"], 10 ** 9, args["extra"]))
sweep = SeedSweep(config, list(range(args["seeds"])))
k = args["steps_per_call"]
done = 0
def call():
  global done
  done += k
  sweep.run(done, steps_per_call=k)
  jax.block_until_ready(sweep.states)
call()  # compile
times = []
for _ in range(args["calls"]):
  t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
print(json.dumps({"devices": len(jax.devices()), "times": times}))
"""


def measure(variant: str, dataset: str, seeds: int, devices: int, calls: int, steps_per_call: int,
            extra: dict, fusions: str = "none") -> dict:
  """Times of `calls` sweep calls in a fresh process whose CPU is `devices` XLA devices."""
  args = {"variant": variant, "dataset": dataset, "seeds": seeds, "devices": devices, "calls": calls,
          "steps_per_call": steps_per_call, "extra": extra, "fusions": fusions}
  proc = subprocess.run([sys.executable, "-c", _MEASURE, str(HERE), json.dumps(args)],
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"measuring {variant} on {devices} devices failed:\n{proc.stderr[-3000:]}")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  if result["devices"] != devices:
    raise SystemExit(f"asked for {devices} CPU devices, JAX started with {result['devices']}")
  return result


def main(argv=None) -> int:
  sys.path.insert(0, str(HERE))
  from gan_mode_collapse import CPU_LIBRARY_FUSIONS, VARIANTS, parse_overrides
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--variants", default="pacgan3,non_saturating")
  p.add_argument("--dataset", default="grid25")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--devices", default="1,5", help="device counts; ratios are against the first")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--calls", type=int, default=4)
  p.add_argument("--steps-per-call", type=int, default=100)
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
  p.add_argument("--cpu-library-fusions", default="none",
                 help="comma-separated settings of gan_mode_collapse.py's option (none, default); "
                      "each is timed at each device count, ratios against the first pair")
  args = p.parse_args(argv)
  variants = [v for v in args.variants.split(",") if v]
  for v in variants:
    if v not in VARIANTS:
      p.error(f"unknown variant '{v}'; choose from {', '.join(VARIANTS)}")
  fusions = [f for f in args.cpu_library_fusions.split(",") if f]
  for f in fusions:
    if f not in CPU_LIBRARY_FUSIONS:
      p.error(f"unknown --cpu-library-fusions '{f}'; choose from {', '.join(CPU_LIBRARY_FUSIONS)}")
  settings = [(f, int(d)) for f in fusions for d in args.devices.split(",")]
  extra = parse_overrides(args.set)
  print(f"machine: {platform.node()}, {os.cpu_count()} cores; dataset {args.dataset}, {args.seeds} "
        f"seeds, --set {' '.join(args.set) or '(none)'}; seconds per 100 steps, median of "
        f"{args.calls} calls of {args.steps_per_call} steps after a warm-up call, median over "
        f"{args.rounds} rounds", flush=True)
  name = lambda f, d: f"{d} device{'s' * (d > 1)}" + (f", fusions {f}" if len(fusions) > 1 else "")
  print("| variant | " + " | ".join(name(f, d) for f, d in settings) + " | speed-up |")
  print("|---|" + "---|" * (len(settings) + 1))
  for variant in variants:
    times = {setting: [] for setting in settings}
    for _ in range(args.rounds):
      for f, d in settings:  # alternating, so a drift in the machine's speed falls on all alike
        r = measure(variant, args.dataset, args.seeds, d, args.calls, args.steps_per_call, extra, f)
        times[f, d].append(statistics.median(r["times"]) * 100 / args.steps_per_call)
    med = {setting: statistics.median(v) for setting, v in times.items()}
    cells = [f"{med[s]:.1f} (rounds {', '.join(f'{t:.1f}' for t in times[s])})" for s in settings]
    ratios = ", ".join(f"{med[settings[0]] / med[s]:.2f}x with {name(*s)}" for s in settings[1:])
    print(f"| {variant} | " + " | ".join(cells) + f" | {ratios} |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
