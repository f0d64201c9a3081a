"""Domain feature networks for the builtin image datasets (FD-digits, FD-shapes).

Inception features of 8x8 digits or 32x32 procedural shapes say little; a small classifier trained on
the dataset itself does better. The library trains one deterministically (fixed seed, fixed order,
full-batch-free plain Adam) on the dataset's train split, reports its test accuracy, and caches the
weights (flax msgpack, never pickle) in the cache directory keyed by dataset, dataset parameters,
seed and architecture version. Its penultimate layer gives the features of a Frechet distance, its
softmax the class-coverage and confidence scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import sys

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.data import builtin, data_config, eval_arrays
from jaxgen.errors import CheckpointError, DataError
from jaxgen.locks import file_lock, private_temp_path
from jaxgen.metrics.features import FeatureNetwork
from jaxgen.nn.layers import Conv2D

ARCH_VERSION = 1  # bump when the architecture or the training recipe changes (invalidates caches)
FEATURE_DIM = 128


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("JAXGEN_CACHE_DIR") or "~/.cache/jaxgen").expanduser()


class DomainClassifier(nn.Module):
  """conv-conv-pool twice, then a 128-d feature layer and the class logits.

  No normalisation layers: the features are a deterministic function of the input alone."""
  num_classes: int
  width: int = 32

  @nn.compact
  def __call__(self, x):
    for level, ch in enumerate((self.width, 2 * self.width)):
      x = nn.relu(Conv2D(ch, name=f"conv{level}a")(x))  # im2col on CPU, XLA conv elsewhere
      x = nn.relu(Conv2D(ch, name=f"conv{level}b")(x))
      x = nn.avg_pool(x, (2, 2), (2, 2))
    features = nn.relu(nn.Dense(FEATURE_DIM, name="features")(x.reshape(x.shape[0], -1)))
    return features, nn.Dense(self.num_classes, name="logits")(features)


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """What the classifier of one builtin dataset sees."""
  dataset: str
  image_size: int
  channels: int
  num_classes: int
  class_names: tuple[str, ...]
  data: ml_collections.ConfigDict  # the data config that reads its native-resolution images
  epochs: int
  max_shift: int  # training augmentation: random translations of up to this many pixels
  width: int      # channels of the first conv level

  @property
  def key(self) -> str:
    return (f"{self.dataset}-size{self.image_size}-n{self.data.num_examples}"
            f"-seed{self.data.dataset_seed}")


def domain_spec(data_cfg: ml_collections.ConfigDict) -> DomainSpec:
  """The classifier spec for a run's data config (digits or shapes; native resolution)."""
  name = data_cfg.name
  if name == "digits":
    cfg = data_config(name="digits", image_size=8, channels=1, data_dir=data_cfg.get("data_dir", ""))
    return DomainSpec("digits", 8, 1, 10, builtin.CLASS_NAMES["digits"], cfg, epochs=30,
                      max_shift=1, width=32)
  if name == "shapes":
    size = data_cfg.get("generate_size", 32) or 32
    cfg = data_config(name="shapes", image_size=size, channels=3, generate_size=size,
                      num_examples=data_cfg.get("num_examples", 0),
                      dataset_seed=data_cfg.get("dataset_seed", 0),
                      data_dir=data_cfg.get("data_dir", ""))
    return DomainSpec("shapes", size, 3, len(builtin.SHAPE_CLASSES), builtin.CLASS_NAMES["shapes"], cfg,
                      epochs=1, max_shift=0, width=16)
  raise DataError(f"There is no domain feature network for dataset '{name}' (only digits and "
                  "shapes). Use --features inception with Inception weights.")


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
  """Translates each image by up to max_shift pixels in x and y, filling with the background (-1)."""
  if not max_shift:
    return images
  m = max_shift
  padded = np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)), constant_values=-1.0)
  dy, dx = rng.integers(0, 2 * m + 1, size=(2, len(images)))
  h, w = images.shape[1:3]
  rows = dy[:, None] + np.arange(h)[None, :]
  cols = dx[:, None] + np.arange(w)[None, :]
  return padded[np.arange(len(images))[:, None, None], rows[:, :, None], cols[:, None, :]]


def _train(spec: DomainSpec, seed: int, log) -> tuple[dict, float]:
  """Trains the classifier; returns (params, test accuracy). Deterministic for (data, seed)."""
  train = eval_arrays(spec.data, "train")
  test = eval_arrays(spec.data, "test")
  model = DomainClassifier(spec.num_classes, spec.width)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, train["image"][:1])["params"]
  batch = 64
  steps_per_epoch = len(train["image"]) // batch
  schedule = optax.cosine_decay_schedule(2e-3, spec.epochs * steps_per_epoch, alpha=0.05)
  optimizer = optax.adam(schedule)
  opt_state = optimizer.init(params)

  @jax.jit
  def epoch(params, opt_state, images, labels, order):
    def step(carry, idx):
      params, opt_state = carry
      def loss_fn(p):
        logits = model.apply({"params": p}, images[idx])[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), order[: steps_per_epoch * batch].reshape(steps_per_epoch, batch))
    return params, opt_state, losses.mean()

  labels = jnp.asarray(train["label"])
  rng = np.random.default_rng(seed)
  for e in range(spec.epochs):
    order = jnp.asarray(rng.permutation(len(labels)))
    images = jnp.asarray(random_shift(train["image"], spec.max_shift, rng))
    params, opt_state, loss = epoch(params, opt_state, images, labels, order)
    log(f"  epoch {e + 1}/{spec.epochs}: train loss {float(loss):.4f}")
  logits = jax.jit(lambda p, x: model.apply({"params": p}, x)[1])(params, test["image"])
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == test["label"]))
  return params, accuracy


def load_or_train(data_cfg: ml_collections.ConfigDict, seed: int = 0, *, log=None,
                  cache: pathlib.Path | None = None) -> tuple[DomainClassifier, dict, dict]:
  """(module, params, info) of the dataset's classifier, trained and cached on first use."""
  log = log or (lambda msg: print(msg, file=sys.stderr))
  spec = domain_spec(data_cfg)
  directory = (cache or cache_dir()) / "feature_nets"
  stem = f"domain-v{ARCH_VERSION}-{spec.key}-seed{seed}"
  weights_path, info_path = directory / f"{stem}.msgpack", directory / f"{stem}.json"
  model = DomainClassifier(spec.num_classes, spec.width)
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, spec.image_size, spec.image_size,
                                                          spec.channels)))["params"])
  # Under the lock, so that parallel jobs sharing the cache train the classifier once.
  with file_lock(directory / f".{stem}.lock"):
    if weights_path.exists() and info_path.exists():
      try:
        params = flax.serialization.from_bytes(template, weights_path.read_bytes())
        info = json.loads(info_path.read_text())
      except Exception as e:  # noqa: BLE001  (any decoding failure means the cache file is broken)
        raise CheckpointError(f"The cached domain classifier {weights_path} is unreadable ({e}). "
                              "Delete it and it will be retrained.") from None
      return model, params, info
    log(f"Training the {spec.dataset} domain classifier (seed {seed}; cached in {directory})...")
    params, accuracy = _train(spec, seed, log)
    log(f"  test accuracy {accuracy:.4f}")
    data = flax.serialization.to_bytes(params)
    info = {"dataset": spec.key, "seed": seed, "arch_version": ARCH_VERSION,
            "test_accuracy": accuracy, "sha256": hashlib.sha256(data).hexdigest()}
    tmp = private_temp_path(weights_path)
    tmp.write_bytes(data)
    info_path.write_text(json.dumps(info, indent=1))
    tmp.replace(weights_path)  # last: a complete weights file implies a complete info file
  return model, params, info


def to_domain_input(samples: jax.Array, spec: DomainSpec) -> jax.Array:
  """Samples in [-1, 1] of any size/channels -> the classifier's native size and channels."""
  x = samples.astype(jnp.float32)
  if x.shape[-1] != spec.channels:
    x = (jnp.mean(x, axis=-1, keepdims=True) if spec.channels == 1
         else jnp.repeat(x, spec.channels, axis=-1))
  if x.shape[1:3] != (spec.image_size, spec.image_size):
    x = jax.image.resize(x, (x.shape[0], spec.image_size, spec.image_size, spec.channels),
                         "linear", antialias=True)
  return x


def domain_network(data_cfg: ml_collections.ConfigDict, seed: int = 0, *, log=None,
                   batch_size: int = 500) -> FeatureNetwork:
  spec = domain_spec(data_cfg)
  model, params, info = load_or_train(data_cfg, seed, log=log)

  @jax.jit
  def run(x):
    features, logits = model.apply({"params": params}, to_domain_input(x, spec))
    return {"features": features, "probs": jax.nn.softmax(logits)}

  return FeatureNetwork(name=f"domain-{spec.dataset}", dim=FEATURE_DIM,
                        digest=info["sha256"][:16],
                        extract=lambda x: {k: np.asarray(v) for k, v in run(x).items()},
                        batch_size=batch_size, num_classes=spec.num_classes,
                        class_names=spec.class_names, info=info)
