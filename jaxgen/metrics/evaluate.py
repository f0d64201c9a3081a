"""`jaxgen eval`: samples from a checkpoint (or an npz), features, reference statistics, metrics.

Reference features of the dataset are computed once per (dataset, feature network) and cached in
`<cache>/reference/` as npz (features, float64 mean/covariance, a content hash of the examples
read). The cache key holds the data config that defines the examples, a cheap fingerprint of the
data on disk, and the feature network's digest, so changing any of them recomputes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import sys
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from jaxgen.data import builtin, eval_arrays, pipeline
from jaxgen.errors import ConfigError, DataError
from jaxgen.locks import private_temp_path
from jaxgen.metrics import frechet, manifold, modes
from jaxgen.metrics.features import FeatureNetwork, extract_all, point_network

METRICS = ("fd", "kid", "pr", "modes", "bpd", "straightness")
MAX_REFERENCE = 50000
# The data config keys that decide which examples a split holds and how they are preprocessed.
_DATA_IDENTITY_KEYS = ("name", "tfds_name", "path", "variant", "num_examples", "dataset_seed",
                       "generate_size", "image_size", "channels", "image_key")


def progress_bar(total: int, desc: str, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, desc=desc, unit="ex", dynamic_ncols=True, leave=False,
              disable=None if enabled else True, file=sys.stderr)


def data_fingerprint(data_cfg: ml_collections.ConfigDict, split: str) -> str:
  """A hash of what defines a split's examples: the data config, plus the dataset's metadata on
  disk (TFDS dataset_info.json, or the image folder's file names, sizes and times)."""
  h = hashlib.sha256()
  identity = {k: data_cfg.get(k) for k in _DATA_IDENTITY_KEYS}
  h.update(json.dumps(identity, sort_keys=True, default=list).encode())
  h.update(split.encode())
  if data_cfg.name == "tfds":
    from jaxgen.data import tfds_store
    info = tfds_store.find_prepared(data_cfg.tfds_name, pipeline.data_dir(data_cfg)) / "dataset_info.json"
    h.update(info.read_bytes())
  elif data_cfg.name == "folder":
    root = pathlib.Path(data_cfg.path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
      st = f.stat()
      h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
  return h.hexdigest()[:16]


def default_network(data_cfg: ml_collections.ConfigDict, kind: str = "auto", *,
                    inception_weights: str | None = None, log=None) -> FeatureNetwork:
  """auto: points for toy2d, the domain classifier for digits/shapes, Inception otherwise."""
  if kind == "auto":
    kind = ("points" if data_cfg.name == "toy2d" else
            "domain" if data_cfg.name in ("digits", "shapes") else "inception")
  if kind == "points":
    if data_cfg.name != "toy2d":
      raise ConfigError("--features points needs 2D data (data.name=toy2d).")
    return point_network()
  if kind == "domain":
    from jaxgen.metrics.domain import domain_network
    return domain_network(data_cfg, log=log)
  if kind == "inception":
    from jaxgen.metrics.inception import inception_network
    return inception_network(inception_weights)
  raise ConfigError(f"Unknown feature network '{kind}': use auto, domain, inception or points.")


def array_digest(*arrays) -> str:
  """A short content hash of arrays (for cache keys)."""
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


@dataclasses.dataclass
class Reference:
  features: np.ndarray
  stats: frechet.FeatureStats
  probs: np.ndarray | None
  content_digest: str
  split: str
  cached: bool


def reference(data_cfg: ml_collections.ConfigDict, network: FeatureNetwork, *, split: str = "train",
              limit: int = MAX_REFERENCE, cache: pathlib.Path, progress: bool = True) -> Reference:
  """The reference features and statistics of a dataset split, from the cache when present."""
  key = f"{network.name}-{network.digest}-{data_cfg.name}-{data_fingerprint(data_cfg, split)}-n{limit}"
  path = cache / "reference" / f"{key}.npz"
  if path.exists():
    try:
      with np.load(path, allow_pickle=False) as f:
        feats = f["features"]
        stats = frechet.FeatureStats.from_moments(f["mean"], f["cov"], int(f["count"]))
        probs = f["probs"] if "probs" in f.files else None
        return Reference(feats, stats, probs, str(f["content_digest"]), split, cached=True)
    except (OSError, KeyError, ValueError) as e:
      raise DataError(f"The cached reference statistics {path} are unreadable ({e}). Delete the "
                      "file and they will be recomputed.") from None
  arrays = eval_arrays(data_cfg, split, limit)
  examples = arrays["point"] if "point" in arrays else arrays["image"]
  bar = progress_bar(len(examples), f"reference features ({split})", progress)
  out = extract_all(network, examples, bar)
  bar.close()
  stats = frechet.FeatureStats(network.dim).update(out["features"])
  digest = array_digest(examples)
  path.parent.mkdir(parents=True, exist_ok=True)
  extra = {"probs": out["probs"]} if "probs" in out else {}
  tmp = private_temp_path(path, ".tmp.npz")  # np.savez keeps a .npz name as given
  np.savez(tmp, features=out["features"].astype(np.float32), mean=stats.mean, cov=stats.cov,
           count=np.int64(stats.count), content_digest=np.asarray(digest), **extra)
  tmp.replace(path)
  return Reference(out["features"], stats, out.get("probs"), digest, split, cached=False)


# -- samples ---------------------------------------------------------------------------------------

def generate(sample_fn: Callable, num: int, batch: int, seed: int, progress: bool = True) -> np.ndarray:
  """`num` samples from sample_fn(key, batch), batch i drawn with fold_in(PRNGKey(seed), i)."""
  root = jax.random.PRNGKey(seed)
  parts = []
  bar = progress_bar(num, "sampling", progress)
  for i in range(-(-num // batch)):
    x = np.asarray(sample_fn(jax.random.fold_in(root, i)))
    parts.append(x)
    bar.update(min(batch, num - i * batch))
  bar.close()
  samples = np.concatenate(parts)[:num]
  if not np.all(np.isfinite(samples)):
    raise DataError(f"{int(np.sum(~np.isfinite(samples)))} sample values are NaN or Inf; the "
                    "checkpoint or the sampler is broken.")
  return samples


def load_samples(path: str) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as f:
      if "samples" not in f.files:
        raise DataError(f"{path} has no 'samples' array (it has {', '.join(f.files)}). Write "
                        "samples with `jaxgen sample --npz` or np.savez(path, samples=x).")
      return np.asarray(f["samples"], np.float32)
  except (OSError, ValueError) as e:
    raise DataError(f"Cannot read samples from {path}: {e}") from None


# -- metrics ---------------------------------------------------------------------------------------

def class_scores(probs: np.ndarray, reference_probs: np.ndarray | None,
                 class_names: tuple[str, ...]) -> dict:
  """Scores of the domain classifier's predictions on samples.

  class_coverage: fraction of classes predicted for at least 10% of a uniform share of samples;
  confidence: mean max probability (the real data's value is given alongside for comparison);
  class_kl: KL(predicted class histogram || reference class histogram)."""
  num_classes = probs.shape[1]
  counts = np.bincount(np.argmax(probs, 1), minlength=num_classes)
  covered = counts >= max(1.0, 0.1 * len(probs) / num_classes)
  ref_hist = (np.bincount(np.argmax(reference_probs, 1), minlength=num_classes) + 1e-9
              if reference_probs is not None else np.ones(num_classes))
  q, p = counts / counts.sum(), ref_hist / ref_hist.sum()
  nz = q > 0
  out = {"class_coverage": float(covered.mean()),
         "classes_covered": int(covered.sum()),
         "confidence": float(np.max(probs, 1).mean()),
         "class_kl": float(np.sum(q[nz] * np.log(q[nz] / p[nz]))),
         "class_histogram": {name: int(c) for name, c in zip(class_names, counts)}}
  if reference_probs is not None:
    out["reference_confidence"] = float(np.max(reference_probs, 1).mean())
  return out


def image_metrics(metric: str, sample_out: dict, ref: Reference, network: FeatureNetwork,
                  kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
  feats = sample_out["features"]
  if metric == "fd":
    stats = frechet.FeatureStats(network.dim).update(feats)
    r = frechet.frechet_distance_from_stats(stats, ref.stats)
    out = {"fd": r.distance, "fd_mean_term": r.mean_term, "fd_trace_term": r.trace_term,
           "fd_trace_sqrt_imag": r.trace_sqrt_imag}
    if "probs" in sample_out:
      out.update(class_scores(sample_out["probs"], ref.probs, network.class_names))
    return out
  if metric == "kid":
    r = frechet.kernel_inception_distance(ref.features, feats, num_subsets=kid_subsets,
                                          subset_size=kid_subset_size)
    return {"kid": r.mean, "kid_std": r.std, "kid_subsets": r.num_subsets,
            "kid_subset_size": r.subset_size}
  if metric == "pr":
    # Both manifolds from equally many points (the k-NN radii depend on the sample size).
    n = min(len(ref.features), len(feats))
    real = ref.features[np.random.default_rng(0).choice(len(ref.features), n, replace=False)]
    r = manifold.manifold_metrics(real, feats[:n])
    return dataclasses.asdict(r) | {"pr_num": n}
  raise ValueError(metric)


def mode_metrics(samples: np.ndarray, data_cfg: ml_collections.ConfigDict) -> dict:
  variant = data_cfg.get("variant", "")
  if data_cfg.name != "toy2d" or variant not in ("ring8", "grid25"):
    raise ConfigError("--metric modes needs a Gaussian-mixture dataset (data.name=toy2d with "
                      f"data.variant ring8 or grid25); this run has {data_cfg.name}"
                      f"{'/' + variant if data_cfg.name == 'toy2d' else ''}.")
  r = modes.mode_coverage(samples, builtin.toy2d_mode_centres(variant),
                          builtin.toy2d_mode_std(variant))
  return dataclasses.asdict(r) | {"histogram": list(r.histogram)}


def format_table(title: str, results: dict) -> str:
  lines = [title]
  for k, v in results.items():
    if isinstance(v, dict):
      v = ", ".join(f"{a}: {b}" for a, b in v.items())
    elif isinstance(v, float):
      v = f"{v:.6g}"
    lines.append(f"  {k:<24s} {v}")
  return "\n".join(lines)


def timed(fn, *args, **kwargs):
  t0 = time.perf_counter()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - t0
