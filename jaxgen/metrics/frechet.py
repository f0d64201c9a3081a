"""Frechet distance and kernel inception distance between two sets of features.

Statistics are accumulated in float64 over batches (`FeatureStats`), so the features of 50k samples
never need to be held at once. The Frechet distance between N(mu1, S1) and N(mu2, S2) is

    |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})                   (Dowson & Landau 1982)

and Tr((S1 S2)^{1/2}) is computed as Tr((A S2 A)^{1/2}) with A = S1^{1/2}: S1 S2 is similar to
A S2 A (= A^{-1} (A S2 A) A where S1 is invertible, and by continuity otherwise), which is symmetric
positive semi-definite, so near-singular covariances need no added epsilon. With B = S2^{1/2},
A S2 A = (A B)(A B)^T, so its square roots' trace is the sum of the singular values of A B: taken
from an SVD, small ones keep their full accuracy, where the eigenvalues of A S2 A (their squares)
would fall under the eigensolver's rounding floor (a feature spectrum reaching down to 1e-6 lost
1e-5 of FD that way). Rounding can leave A S2 A with slightly negative eigenvalues; their square
roots are imaginary, and the sum of their magnitudes is the complex residue `trace_sqrt_imag` that
the usual scipy.linalg.sqrtm route would report as the imaginary part. It is returned and checked.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from jaxgen.errors import DataError

# A complex residue above this fraction of Tr((S1 S2)^{1/2}) means the covariances are not
# trustworthy (too few samples for the dimension, or non-finite features): the result is rejected.
MAX_RELATIVE_IMAG_RESIDUE = 1e-3


class FeatureStats:
  """Streaming float64 mean and covariance of feature vectors (Chan et al. pairwise updates).

  Each batch's own mean and scatter are computed in float64 and merged, which keeps the
  covariance accurate even when the mean is large relative to the spread.
  """

  def __init__(self, dim: int):
    self.dim = dim
    self.count = 0
    self.mean = np.zeros(dim, np.float64)
    self.scatter = np.zeros((dim, dim), np.float64)  # sum of (x - mean)(x - mean)^T

  def update(self, features) -> "FeatureStats":
    x = np.asarray(features, np.float64).reshape(-1, self.dim)
    if not np.all(np.isfinite(x)):
      raise DataError("Features contain NaN or Inf; the samples or the feature network are broken.")
    n = x.shape[0]
    if n == 0:
      return self
    batch_mean = x.mean(axis=0)
    centred = x - batch_mean
    batch_scatter = centred.T @ centred
    delta = batch_mean - self.mean
    total = self.count + n
    self.scatter += batch_scatter + np.outer(delta, delta) * (self.count * n / total)
    self.mean += delta * (n / total)
    self.count = total
    return self

  @property
  def cov(self) -> np.ndarray:
    if self.count < 2:
      raise DataError(f"A covariance needs at least 2 feature vectors, got {self.count}.")
    return self.scatter / (self.count - 1)

  def save(self, path: str | pathlib.Path, **metadata) -> None:
    np.savez(path, mean=self.mean, cov=self.cov, count=np.int64(self.count),
             **{f"meta_{k}": np.asarray(v) for k, v in metadata.items()})

  @classmethod
  def from_moments(cls, mean, cov, count: int) -> "FeatureStats":
    stats = cls(len(mean))
    stats.mean = np.asarray(mean, np.float64)
    stats.scatter = np.asarray(cov, np.float64) * (count - 1)
    stats.count = int(count)
    return stats

  @classmethod
  def load(cls, path: str | pathlib.Path) -> "FeatureStats":
    with np.load(path, allow_pickle=False) as f:
      return cls.from_moments(f["mean"], f["cov"], int(f["count"]))


@dataclasses.dataclass(frozen=True)
class FrechetResult:
  distance: float
  mean_term: float           # |mu1 - mu2|^2
  trace_term: float          # Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})
  trace_sqrt_imag: float     # complex residue of Tr((S1 S2)^{1/2}); see the module docstring


def _rounding_floor(vals: np.ndarray) -> float:
  """Eigenvalues smaller in magnitude than this are rounding noise of a symmetric eigensolver
  (d * eps * largest |eigenvalue|); they are set to 0 rather than square-rooted, since sqrt turns
  noise of 1e-16 into 1e-8 per dimension."""
  return len(vals) * np.finfo(np.float64).eps * float(np.max(np.abs(vals), initial=0.0))


def _denoised_eigvalsh(sym: np.ndarray, vectors: bool = False):
  sym = (sym + sym.T) / 2
  vals, vecs = np.linalg.eigh(sym) if vectors else (np.linalg.eigvalsh(sym), None)
  vals = np.where(np.abs(vals) <= _rounding_floor(vals), 0.0, vals)
  return vals, vecs


def _psd_sqrt(sym: np.ndarray) -> np.ndarray:
  vals, vecs = _denoised_eigvalsh(sym, vectors=True)
  return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> tuple[float, float]:
  """(real part, imaginary residue) of Tr((cov1 cov2)^{1/2})."""
  a = _psd_sqrt(np.asarray(cov1, np.float64))
  b = _psd_sqrt(np.asarray(cov2, np.float64))
  real = float(np.linalg.svd(a @ b, compute_uv=False).sum())
  vals, _ = _denoised_eigvalsh(a @ np.asarray(cov2, np.float64) @ a)
  imag = float(np.sqrt(np.clip(-vals, 0.0, None)).sum())
  return real, imag


def frechet_distance(mu1, cov1, mu2, cov2, *, check_residue: bool = True) -> FrechetResult:
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
    raise DataError(f"Feature statistics do not match: means {mu1.shape} and {mu2.shape}, "
                    f"covariances {cov1.shape} and {cov2.shape}. Were they made by the same "
                    "feature network?")
  tr_sqrt, imag = trace_sqrt_product(cov1, cov2)
  if check_residue and imag > MAX_RELATIVE_IMAG_RESIDUE * max(tr_sqrt, 1e-12):
    raise DataError(f"Tr((S1 S2)^1/2) has a complex residue of {imag:.3g} (real part "
                    f"{tr_sqrt:.6g}): the covariances are numerically indefinite. Use more samples "
                    "than feature dimensions, or check the features for degenerate values.")
  mean_term = float(np.sum((mu1 - mu2) ** 2))
  trace_term = float(np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
  return FrechetResult(distance=mean_term + trace_term, mean_term=mean_term,
                       trace_term=trace_term, trace_sqrt_imag=imag)


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats, **kw) -> FrechetResult:
  return frechet_distance(a.mean, a.cov, b.mean, b.cov, **kw)


# -- KID -------------------------------------------------------------------------------------------

def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3, the kernel of Binkowski et al. (2018)."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased estimator of MMD^2 (Gretton et al. 2012, eq. 3) with the polynomial kernel."""
  m, n = len(x), len(y)
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  sum_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
  sum_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
  return float(sum_xx + sum_yy - 2.0 * kxy.mean())


@dataclasses.dataclass(frozen=True)
class KIDResult:
  mean: float
  std: float
  num_subsets: int
  subset_size: int


def kernel_inception_distance(real, fake, *, num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> KIDResult:
  """Mean and std of the unbiased MMD^2 over random subsets (without replacement within a subset)."""
  real = np.asarray(real, np.float64)
  fake = np.asarray(fake, np.float64)
  if real.shape[1:] != fake.shape[1:] or real.ndim != 2:
    raise DataError(f"KID needs two [N, D] feature sets of the same D, got {real.shape} and {fake.shape}.")
  size = min(subset_size, len(real), len(fake))
  if size < 2:
    raise DataError(f"KID needs at least 2 samples in each set, got {len(real)} and {len(fake)}.")
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                          fake[rng.choice(len(fake), size, replace=False)])
            for _ in range(num_subsets)]
  return KIDResult(mean=float(np.mean(values)), std=float(np.std(values)),
                   num_subsets=num_subsets, subset_size=size)

