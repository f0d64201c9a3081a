"""FD of a trained digits model against NFE for several samplers (the sampler benchmark on a real
network, where no exact answer exists).

    python experiments/samplers_digits.py --workdir runs/digits_cosine --nfe 10,20,50

For each sampler and NFE: `jaxgen eval --metric fd --num N --sampler S --steps K` with K the most
grid steps whose NFE fits (Heun: 2K - 1). Prints the BENCHMARKS.md table; the JSON files are kept
under WORKDIR/samplers/.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess

from jaxgen.samplers import registry

DEFAULT = "ddpm,ddim,euler_ancestral,heun,dpm_solver_3,dpmpp_2m,dpmpp_3m,dpmpp_2m_sde,unipc_2"


def main() -> int:
  ap = argparse.ArgumentParser()
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--samplers", default=DEFAULT)
  ap.add_argument("--nfe", default="10,20,50")
  ap.add_argument("--num", type=int, default=1000)
  ap.add_argument("--grid", default="timesteps", choices=("timesteps", "karras", "logsnr"))
  args = ap.parse_args()
  out_dir = pathlib.Path(args.workdir) / "samplers"
  out_dir.mkdir(exist_ok=True)
  rows = []
  for name in args.samplers.split(","):
    for target in (int(v) for v in args.nfe.split(",")):
      steps = registry.steps_for_nfe(name, target)
      path = out_dir / f"{args.grid}_{name}_{target}.json"
      if not path.exists():
        subprocess.run(["jaxgen", "eval", "--workdir", args.workdir, "--metric", "fd", "--num",
                        str(args.num), "--sampler", name, "--steps", str(steps), "--json", str(path),
                        "--no-progress", "--grid", args.grid], check=True)
      metrics = json.loads(path.read_text())["metrics"]
      nfe = registry.nfe(name, [float(steps - i) for i in range(steps)] + [0.0])
      rows.append((name, nfe, steps, metrics["fd"]))
  print("| sampler | NFE | steps | FD |\n|---|---|---|---|")
  for name, nfe, steps, fd in rows:
    print(f"| {name} | {nfe} | {steps} | {fd:.2f} |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
