"""Likelihood reports: a method's bound in bits per dimension over a dataset split."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from jaxgen.data import eval_arrays
from jaxgen.errors import ConfigError
from jaxgen.metrics.features import pad_batch


def evaluate_bpd(method, params, mutable, config: ml_collections.ConfigDict, *, num: int,
                 batch: int, seed: int = 0, split: str = "test", progress: bool = True) -> dict:
  """Mean (and standard error) of the per-example bound over the first `num` examples of a split.

  Example i's noise comes from fold_in(PRNGKey(seed), i // batch), so the figure is reproducible."""
  from jaxgen.metrics.evaluate import progress_bar
  if method.bpd is None:
    raise ConfigError(f"Method '{method.name}' provides no likelihood bound; --metric bpd applies "
                      "to diffusion methods.")
  arrays = eval_arrays(config.data, split, num)
  x = arrays["point"] if "point" in arrays else arrays["image"]
  labels = arrays.get("label")
  # Class-conditional models report -log p(x | label); others ignore the labels.
  fn = jax.jit(lambda p, m, xb, k, lb: method.bpd(p, m, xb, k, labels=lb))
  batch = min(batch, len(x))  # no padding beyond the examples asked for
  root = jax.random.PRNGKey(seed)
  parts: dict[str, list[np.ndarray]] = {}
  bar = progress_bar(len(x), f"bits/dim ({split})", progress)
  for i, start in enumerate(range(0, len(x), batch)):
    chunk = x[start:start + batch]
    n = len(chunk)
    chunk_labels = None if labels is None else pad_batch(labels[start:start + batch], batch)
    out = fn(params, mutable, pad_batch(chunk, batch), jax.random.fold_in(root, i), chunk_labels)
    for k, v in out.items():
      parts.setdefault(k, []).append(np.asarray(v)[:n])
    bar.update(n)
  bar.close()
  values = {k: np.concatenate(v) for k, v in parts.items()}
  bpd = values.pop("bpd")
  if not np.all(np.isfinite(bpd)):
    raise ConfigError("The likelihood bound is not finite for some examples; the checkpoint is "
                      "broken or its variance settings are degenerate.")
  result = {"bpd": float(bpd.mean()), "bpd_stderr": float(bpd.std(ddof=1) / np.sqrt(len(bpd))),
            "bpd_split": split, "bpd_num": int(len(bpd))}
  result.update({k: float(v.mean()) for k, v in values.items()})
  return result
