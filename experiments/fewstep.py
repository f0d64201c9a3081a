"""Few-step and one-step generation, end to end: 1-rectified flow, reflow to 2-rectified flow,
1-step distillation, consistency distillation from a DDPM teacher, consistency training, and the
teacher itself at matched NFE. Prints the BENCHMARKS.md table and writes a quality-vs-NFE plot and
the 1-step sample pictures.

    python experiments/fewstep.py --group toy2d --root runs/fewstep_toy2d
    python experiments/fewstep.py --group digits --root runs/fewstep_digits [--teacher RUN]

Every stage is a CLI command (`jaxgen train / reflow / eval / sample`), logged with its command
line in ROOT/commands.log; a rerun skips what is finished (training and reflow resume where they
stopped). Evaluations are ROOT/evals/*.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
NFES = (1, 2, 4, 8, 16)

GROUPS = {
    "toy2d": {
        "teacher": "ddpm_toy2d.py", "flow": "flow_toy2d.py", "consistency": "consistency_toy2d.py",
        "metrics": "modes,fd", "num": 2500, "batch": 2500, "couplings": 50000, "finetune_steps": 2000,
        "picture_num": 1000,
        "teacher_sigma_min": 0.01,  # DDPM linear betas: sqrt(beta_1 / (1 - beta_1))
        "cd": ["--config.consistency.mode=distillation", "--config.consistency.curriculum=fixed",
               "--config.consistency.num_levels=18", "--config.consistency.distance=l2",
               "--config.consistency.weighting=uniform", "--config.consistency.level_sampling=uniform",
               "--config.consistency.target_ema=0.95", "--config.consistency.sigma_min=0.01"],
        "ct": [],
    },
    "digits": {
        "teacher": "ddpm_digits_cosine.py", "flow": "flow_digits.py",
        "consistency": "consistency_digits.py", "metrics": "fd", "num": 2500, "batch": 500,
        "picture_num": 64,
        "couplings": 10000, "finetune_steps": 2000,
        "cd": [],
        # iCT: pseudo-Huber, lognormal levels, curriculum 10 -> 1280, no EMA target.
        "ct": ["--config.consistency.mode=training", "--config.consistency.curriculum=ict",
               "--config.consistency.distance=pseudo_huber", "--config.consistency.weighting=ict",
               "--config.consistency.level_sampling=lognormal", "--config.consistency.target_ema=0.0",
               "--config.consistency.sigma_min=0.002"],
    },
}


class Runner:
  def __init__(self, root: pathlib.Path):
    self.root = root
    self.log = root / "commands.log"

  def run(self, args: list[str]) -> float:
    cmd = [sys.executable, "-m", "jaxgen", *args]
    t0 = time.perf_counter()
    with open(self.log, "a") as f:
      f.write("$ jaxgen " + " ".join(args) + "\n")
      f.flush()
      subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    with open(self.log, "a") as f:
      f.write(f"# {seconds:.1f} s\n")
    return seconds

  def train(self, name: str, config: str, overrides: list[str]) -> pathlib.Path:
    workdir = self.root / name
    self.run(["train", "--config", str(HERE / config), "--workdir", str(workdir), "--no-progress",
              *overrides])
    return workdir

  def reflow(self, source: pathlib.Path, out_name: str, num: int) -> pathlib.Path:
    out = self.root / out_name
    self.run(["reflow", "--workdir", str(source), "--out", str(out), "--num", str(num),
              "--sampler", "flow_heun", "--steps", "50"])
    return out

  def evaluate(self, label: str, workdir: pathlib.Path, metrics: str, sampler: str, steps: int,
               num: int, batch: int, grid: str = "") -> dict:
    path = self.root / "evals" / f"{label}_{sampler}{'_' + grid if grid else ''}_{steps}.json"
    if not path.exists():
      path.parent.mkdir(exist_ok=True)
      self.run(["eval", "--workdir", str(workdir), "--metric", metrics, "--sampler", sampler,
                "--steps", str(steps), "--num", str(num), "--batch", str(batch), "--no-progress",
                "--json", str(path)] + (["--grid", grid] if grid else []))
    return json.loads(path.read_text())

  def straightness(self, label: str, workdir: pathlib.Path) -> dict:
    path = self.root / "evals" / f"{label}_straightness.json"
    if not path.exists():
      path.parent.mkdir(exist_ok=True)
      self.run(["eval", "--workdir", str(workdir), "--metric", "straightness", "--steps", "100",
                "--num", "1000", "--batch", "500", "--no-progress", "--json", str(path)])
    return json.loads(path.read_text())["metrics"]

  def picture(self, label: str, workdir: pathlib.Path, sampler: str, steps: int, num: int,
              grid: str = "") -> pathlib.Path:
    path = self.root / "pictures" / f"{label}_{steps}step.png"
    if not path.exists():
      path.parent.mkdir(exist_ok=True)
      self.run(["sample", "--workdir", str(workdir), "--num", str(num), "--sampler", sampler,
                "--steps", str(steps), "--out", str(path)] + (["--grid", grid] if grid else []))
    return path


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--group", choices=sorted(GROUPS), required=True)
  ap.add_argument("--root", required=True)
  ap.add_argument("--teacher", help="a trained DDPM run to distil (default: train the group's)")
  ap.add_argument("--only", help="comma-separated stages: teacher,rf1,rf2,distill,cd,ct")
  args = ap.parse_args()
  g = GROUPS[args.group]
  root = pathlib.Path(args.root)
  root.mkdir(parents=True, exist_ok=True)
  r = Runner(root)
  stages = set((args.only or "teacher,rf1,rf2,distill,cd,ct").split(","))
  fine = [f"--config.train.steps={g['finetune_steps']}"]
  rows: list[dict] = []  # one per (model, sampler, NFE)
  pictures: list[tuple[str, pathlib.Path]] = []  # (title, 1-step samples)

  def show(name, workdir, sampler, grid=""):
    pictures.append((name, r.picture(name, workdir, sampler, 1, g["picture_num"], grid)))

  def record(model, workdir, sampler, steps, nfe, grid=""):
    out = r.evaluate(model.replace(" ", "_").replace("/", ""), workdir, g["metrics"], sampler,
                     steps, g["num"], g["batch"], grid)
    rows.append({"model": model, "sampler": sampler + (f" ({grid})" if grid else ""), "nfe": nfe,
                 **out["metrics"]})

  teacher = pathlib.Path(args.teacher) if args.teacher else root / "teacher"
  if "teacher" in stages:
    if not args.teacher:
      r.train("teacher", g["teacher"], [])
    show("teacher_ddim_karras", teacher, "ddim", "karras")
    # The teacher at matched NFE on its own timesteps (linear spacing) and on EDM's grid.
    for k in NFES:
      record("DDPM teacher", teacher, "ddim", k, k, "timesteps")
    for k in NFES:
      record("DDPM teacher", teacher, "ddim", k, k, "karras")
    for k in NFES[1:]:
      record("DDPM teacher", teacher, "dpmpp_2m", k, k, "karras")
    record("DDPM teacher", teacher, "ddim", 100, 100, "karras")

  straight = {}
  if "rf1" in stages or "rf2" in stages or "distill" in stages:
    rf1 = r.train("rf1", g["flow"], [])
    if "rf1" in stages:
      for k in NFES:
        record("1-rectified flow", rf1, "flow_euler", k, k)
      record("1-rectified flow", rf1, "flow_heun", 50, 99)
      straight["1-rectified flow"] = r.straightness("rf1", rf1)
      show("rf1", rf1, "flow_euler")
  if "rf2" in stages or "distill" in stages:
    couplings1 = r.reflow(rf1, "rf1_couplings", g["couplings"])
    rf2 = r.train("rf2", g["flow"], ["--config.data.name=couplings",
                                     f"--config.data.path={couplings1}",
                                     f"--config.flow.init_from={rf1}", *fine])
    if "rf2" in stages:
      for k in NFES:
        record("2-rectified flow", rf2, "flow_euler", k, k)
      straight["2-rectified flow"] = r.straightness("rf2", rf2)
      show("rf2", rf2, "flow_euler")
  if "distill" in stages:
    couplings2 = r.reflow(rf2, "rf2_couplings", g["couplings"])
    distilled = r.train("rf2_distilled", g["flow"], [
        "--config.data.name=couplings", f"--config.data.path={couplings2}",
        f"--config.flow.init_from={rf2}", "--config.flow.time_sampling=discrete",
        "--config.flow.discrete_steps=1", "--config.sample.steps=1", *fine])
    record("2-RF distilled (k=1)", distilled, "flow_euler", 1, 1)
    show("rf2_distilled", distilled, "flow_euler")
  if "cd" in stages:
    cd = r.train("cd", g["consistency"], [*g["cd"], "--config.consistency.mode=distillation",
                                          f"--config.consistency.teacher={teacher}"])
    for k in (1, 2):
      record("consistency distillation", cd, "consistency", k, k)
    show("cd", cd, "consistency")
  if "ct" in stages:
    ct = r.train("ct", g["consistency"], [*g["ct"], "--config.consistency.mode=training"])
    for k in (1, 2):
      record("consistency training", ct, "consistency", k, k)
    show("ct", ct, "consistency")

  (root / "results.json").write_text(json.dumps({"rows": rows, "straightness": straight}, indent=1))
  print(table(rows, g["metrics"]))
  for name, s in straight.items():
    print(f"straightness {name}: {s['straightness']:.4g} +- {s['straightness_stderr']:.2g}")
  plot(rows, root / "quality_vs_nfe.png", "fd")
  montage(pictures, root / "one_step.png")
  return 0


TITLES = {"teacher_ddim_karras": "DDPM teacher, DDIM", "rf1": "1-rectified flow",
          "rf2": "2-rectified flow", "rf2_distilled": "2-RF distilled", "cd": "consistency distill.",
          "ct": "consistency training"}


def montage(pictures: list[tuple[str, pathlib.Path]], path: pathlib.Path) -> None:
  """The 1-step samples of every model side by side."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from PIL import Image
  if not pictures:
    return
  fig, axes = plt.subplots(1, len(pictures), figsize=(3 * len(pictures), 3.3), squeeze=False)
  for ax, (name, picture) in zip(axes[0], pictures):
    ax.imshow(Image.open(picture))
    ax.set_title(f"{TITLES.get(name, name)}, 1 step", fontsize=9)
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def table(rows: list[dict], metrics: str) -> str:
  cols = ["fd"] + (["modes_captured", "high_quality_percent", "reverse_kl"] if "modes" in metrics else [])
  head = "| model | sampler | NFE | " + " | ".join(cols) + " |"
  lines = [head, "|" + "---|" * (3 + len(cols))]
  for row in rows:
    cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c)) for c in cols]
    lines.append(f"| {row['model']} | {row['sampler']} | {row['nfe']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path, metric: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  lines = list(dict.fromkeys((r["model"], r["sampler"]) for r in rows if r["nfe"] <= 16))
  colours = plt.get_cmap("tab10")
  for i, (model, sampler) in enumerate(lines):
    pts = sorted((r["nfe"], r[metric]) for r in rows
                 if (r["model"], r["sampler"]) == (model, sampler) and r["nfe"] <= 16)
    ax.plot(*zip(*pts), marker="o" if len(pts) > 1 else "*", markersize=6 if len(pts) > 1 else 14,
            color=colours(i), label=f"{model} ({sampler})")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("NFE")
  ax.set_ylabel(metric.upper())
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


if __name__ == "__main__":
  sys.exit(main())
