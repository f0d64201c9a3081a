"""k-nearest-neighbour manifold metrics between real and generated features.

- Precision and recall (Kynkaenniemi et al. 2019): the real manifold is the union of balls around
  each real feature with radius the distance to its k-th nearest real neighbour; precision is the
  fraction of generated samples inside it, recall the fraction of real samples inside the generated
  manifold built the same way.
- Density and coverage (Naeem et al. 2020): density counts how many real balls each generated
  sample falls in, divided by k (about 1 when the distributions match, unbounded above); coverage is
  the fraction of real balls holding at least one generated sample.

Distances are computed in row blocks so that 50k x 50k comparisons need only block x N memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxgen.errors import DataError

BLOCK = 1024


def _sq_norms(x):
  return np.einsum("ij,ij->i", x, x)


def _block_distances(a, b, b_sq):
  """Euclidean distances between rows of a (block) and all rows of b."""
  d2 = _sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
  return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
  """Distance from each row of x to its k-th nearest other row."""
  if len(x) <= k:
    raise DataError(f"k-nearest-neighbour radii need more than k={k} samples, got {len(x)}.")
  x_sq = _sq_norms(x)
  radii = np.empty(len(x), x.dtype)
  for start in range(0, len(x), BLOCK):
    d = _block_distances(x[start:start + BLOCK], x, x_sq)
    rows = np.arange(d.shape[0])
    d[rows, start + rows] = 0.0  # the point itself, exactly
    radii[start:start + BLOCK] = np.partition(d, k, axis=1)[:, k]
  return radii


def _ball_membership(queries, centres, radii):
  """(any: query inside at least one ball, count: number of balls holding each query,
  nearest_ok: for each centre, whether some query lies inside its ball)."""
  c_sq = _sq_norms(centres)
  inside_any = np.zeros(len(queries), bool)
  inside_count = np.zeros(len(queries), np.int64)
  centre_hit = np.zeros(len(centres), bool)
  for start in range(0, len(queries), BLOCK):
    inside = _block_distances(queries[start:start + BLOCK], centres, c_sq) <= radii[None, :]
    inside_any[start:start + BLOCK] = inside.any(axis=1)
    inside_count[start:start + BLOCK] = inside.sum(axis=1)
    centre_hit |= inside.any(axis=0)
  return inside_any, inside_count, centre_hit


@dataclasses.dataclass(frozen=True)
class ManifoldResult:
  precision: float
  recall: float
  density: float
  coverage: float
  k_pr: int
  k_dc: int


def _as_features(x, name):
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise DataError(f"{name} features must be [N, D], got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise DataError(f"{name} features contain NaN or Inf.")
  return x


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
  real, fake = _as_features(real, "Real"), _as_features(fake, "Generated")
  precision = _ball_membership(fake, real, knn_radii(real, k))[0].mean()
  recall = _ball_membership(real, fake, knn_radii(fake, k))[0].mean()
  return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
  real, fake = _as_features(real, "Real"), _as_features(fake, "Generated")
  _, count, hit = _ball_membership(fake, real, knn_radii(real, k))
  return float(count.sum() / (k * len(fake))), float(hit.mean())


def manifold_metrics(real, fake, k_pr: int = 3, k_dc: int = 5) -> ManifoldResult:
  precision, recall = precision_recall(real, fake, k_pr)
  density, coverage = density_coverage(real, fake, k_dc)
  return ManifoldResult(precision, recall, density, coverage, k_pr, k_dc)
