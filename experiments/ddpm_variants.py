"""Trains and evaluates the DDPM-family variants of a group and prints the BENCHMARKS.md table.

    python experiments/ddpm_variants.py --group digits --root runs/variants

For each variant: `jaxgen train` (resumes if interrupted), a 64-sample grid, `jaxgen eval --metric
fd,kid,pr` on --num samples drawn with --steps respaced ancestral steps, and `jaxgen eval --metric
bpd` on the test split (all T terms of the bound). Finished steps are skipped on a rerun; the
results are the JSON files under ROOT/NAME/.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

GROUPS = {
    "digits": [
        ("linear / eps", "ddpm_digits.py"),
        ("cosine / eps", "ddpm_digits_cosine.py"),
        ("linear / v", "ddpm_digits_v.py"),
        ("linear / x0", "ddpm_digits_x0.py"),
        ("cosine / eps / learned var (hybrid)", "ddpm_digits_improved.py"),
    ],
    "shapes": [
        ("linear / eps", "ddpm_shapes.py"),
        ("cosine / v", "ddpm_shapes_cosine_v.py"),
    ],
    "shapes_cond": [
        ("cosine / v / class-cond. (w=1)", "ddpm_shapes_cond.py"),
    ],
}


def run(cmd: list[str], log: pathlib.Path) -> float:
  t0 = time.perf_counter()
  with open(log, "a") as f:
    f.write("$ " + " ".join(cmd) + "\n")
    f.flush()
    subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
  return time.perf_counter() - t0


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--group", choices=sorted(GROUPS), required=True)
  ap.add_argument("--root", default="runs/variants")
  ap.add_argument("--num", type=int, default=1000, help="samples for fd/kid/pr")
  ap.add_argument("--steps", type=int, default=250, help="respaced ancestral sampling steps")
  ap.add_argument("--bpd-num", type=int, default=297)
  ap.add_argument("--override", action="append", default=[],
                  help="a config override for every variant's training, e.g. --override=--config.train.steps=1000")
  ap.add_argument("--params", choices=("ema", "online"), default="ema",
                  help="parameters to sample and evaluate (online for runs too short for their EMA)")
  ap.add_argument("--only", help="comma-separated config stems to run (default: the whole group)")
  ap.add_argument("--guidance", type=float, action="append", default=None,
                  help="also evaluate these guidance scales (class-conditional groups)")
  args = ap.parse_args()
  rows = []
  for title, config in GROUPS[args.group]:
    if args.only and pathlib.Path(config).stem not in args.only.split(","):
      continue
    workdir = pathlib.Path(args.root) / pathlib.Path(config).stem
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "experiment.log"
    timing = {}
    timing_file = workdir / "timing.json"
    if timing_file.exists():
      timing = json.loads(timing_file.read_text())
    if "train_s" not in timing:
      timing["train_s"] = run(["jaxgen", "train", "--config", str(HERE / config), "--workdir",
                               str(workdir), "--no-progress"] + args.override, log)
      timing_file.write_text(json.dumps(timing))
    grid = workdir / "samples.png"
    if not grid.exists():
      run(["jaxgen", "sample", "--workdir", str(workdir), "--num", "64", "--steps",
           str(args.steps), "--params", args.params, "--out", str(grid)], log)
    scales = args.guidance or [None]
    for w in scales:
      suffix = "" if w is None else f"_w{w:g}"
      fd_json = workdir / f"eval_fd{suffix}.json"
      if not fd_json.exists():
        extra = [] if w is None else ["--guidance", str(w)]
        run(["jaxgen", "eval", "--workdir", str(workdir), "--metric", "fd,kid,pr", "--num",
             str(args.num), "--steps", str(args.steps), "--params", args.params, "--json",
             str(fd_json), "--no-progress"]
            + extra, log)
      if w is not None and not (workdir / f"samples{suffix}.png").exists():
        run(["jaxgen", "sample", "--workdir", str(workdir), "--num", "48", "--steps",
             str(args.steps), "--params", args.params, "--guidance", str(w), "--out", str(workdir / f"samples{suffix}.png")], log)
    bpd_json = workdir / "eval_bpd.json"
    if not bpd_json.exists():
      run(["jaxgen", "eval", "--workdir", str(workdir), "--metric", "bpd", "--num",
           str(args.bpd_num), "--params", args.params, "--json", str(bpd_json), "--no-progress"], log)
    bpd = json.loads(bpd_json.read_text())["metrics"]
    for w in scales:
      suffix = "" if w is None else f"_w{w:g}"
      fd = json.loads((workdir / f"eval_fd{suffix}.json").read_text())["metrics"]
      name = title if w is None else f"{title.split(' (w=')[0]} (w={w:g})"
      rows.append((name, config, fd, bpd, timing["train_s"]))
  print("| variant | config | FD | KID | precision | recall | label acc. | bits/dim | train s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, config, fd, bpd, train_s in rows:
    accuracy = f"{fd['label_accuracy']:.3f}" if "label_accuracy" in fd else "-"
    print(f"| {name} | `experiments/{config}` | {fd['fd']:.2f} | {fd['kid']:.2f} +- "
          f"{fd['kid_std']:.2f} | {fd['precision']:.3f} | {fd['recall']:.3f} | {accuracy} | "
          f"{bpd['bpd']:.3f} +- {bpd['bpd_stderr']:.3f} | {train_s:.0f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
