"""The interface every feature network presents to the metrics, and batched extraction.

A feature network maps generated or real samples (the model's space: images float NHWC in [-1, 1]
of any size, or 2D points) to feature vectors, and optionally to class probabilities. Metrics only
see `FeatureNetwork`, so the FID Inception, the library's domain classifiers, the identity on 2D
points and (later) a CLIP image tower are interchangeable. `digest` identifies architecture and
weights; reference statistics are cached under it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
  name: str
  dim: int
  digest: str
  # A batch of samples -> {"features": [B, dim] float32, and "probs": [B, C] when num_classes > 0}.
  extract: Callable[[np.ndarray], dict[str, np.ndarray]]
  batch_size: int = 250
  num_classes: int = 0
  class_names: tuple[str, ...] = ()
  info: dict = dataclasses.field(default_factory=dict)  # e.g. a classifier's test accuracy


def pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
  """A short last batch repeated to the compiled batch size (callers drop the padding after)."""
  if len(chunk) >= size:
    return chunk
  return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])


def extract_all(network: FeatureNetwork, samples: np.ndarray, progress=None) -> dict[str, np.ndarray]:
  """Runs the network over `samples` in fixed-size batches (the last one padded, so one compile)."""
  batches = (samples[i:i + network.batch_size] for i in range(0, len(samples), network.batch_size))
  return extract_batches(network, batches, len(samples), progress)


def extract_batches(network: FeatureNetwork, batches: Iterable[np.ndarray], total: int,
                    progress=None) -> dict[str, np.ndarray]:
  outputs: dict[str, list[np.ndarray]] = {}
  for chunk in batches:
    n = len(chunk)
    for k, v in network.extract(pad_batch(chunk, network.batch_size)).items():
      outputs.setdefault(k, []).append(np.asarray(v)[:n])
    if progress is not None:
      progress.update(n)
  return {k: np.concatenate(v)[:total] for k, v in outputs.items()}


def point_network() -> FeatureNetwork:
  """2D points are their own features (Frechet distance and precision/recall in the plane)."""
  return FeatureNetwork(name="points", dim=2, digest="identity-2d",
                        extract=lambda x: {"features": np.asarray(x, np.float32)}, batch_size=1000)
