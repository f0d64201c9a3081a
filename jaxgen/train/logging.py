"""Run logging: WORKDIR/metrics.jsonl, TensorBoard events (tensorboardX) and sample grids."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np


class MetricsLog:
  """One JSON object per logged step. On resume, records after the restored step are dropped so
  the file reads as one uninterrupted history."""

  def __init__(self, workdir: pathlib.Path, *, resume_step: int, enabled: bool = True):
    self.enabled = enabled
    self.path = workdir / "metrics.jsonl"
    self.tb = None
    if not enabled:
      return
    if self.path.exists():
      kept = [line for line in self.path.read_text().splitlines()
              if line.strip() and _step_of(line) is not None and _step_of(line) <= resume_step]
      self.path.write_text("".join(line + "\n" for line in kept))
    self.file = open(self.path, "a")
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(str(workdir / "tensorboard"))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    clean = {k: (float(v) if isinstance(v, (float, np.floating, np.ndarray)) else v) for k, v in record.items()}
    self.file.write(json.dumps(clean, allow_nan=True) + "\n")
    self.file.flush()
    for k, v in clean.items():
      if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
        self.tb.add_scalar(f"train/{k}", v, record["step"])

  def image(self, tag: str, grid_uint8: np.ndarray, step: int) -> None:
    if self.enabled:
      self.tb.add_image(tag, grid_uint8, step, dataformats="HWC")

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      self.tb.close()


def _step_of(line: str):
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return None


def read_metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
