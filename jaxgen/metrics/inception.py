"""Inception-v3 as used by FID (Heusel et al. 2017): the 2015 TensorFlow graph's architecture and
its input conventions, as a flax.linen module, with a loader for weights in a local file.

Architecture (Szegedy et al. 2015, "Rethinking the Inception Architecture", Table 1, as frozen in
TensorFlow's 2015-12-05 graph that FID uses): a stem of 3x3 convolutions and max pools to 35x35x192,
three Inception-A blocks (to 35x35x288), a grid reduction (17x17x768), four Inception-C blocks with
factorised 1x7/7x1 convolutions, a second reduction (8x8x1280), two Inception-E blocks (8x8x2048),
global average pooling (the 2048-d `pool_3` features of FID) and a 1008-way classifier (the graph's
logits, for the Inception Score). Every convolution is conv (no bias) + batch norm (eps 1e-3) + ReLU.
Two quirks of the TF graph are kept: the average pools inside blocks exclude the padding from the
average (TF 'SAME' pooling), and the last block's pooling branch uses a max pool.

Input conventions of the graph: images of any size as 8-bit values are bilinearly resized to 299x299
with TF1's legacy ResizeBilinear (source coordinate = output index * in/out, no half-pixel offset),
then mapped to [-1, 1) by (x - 128) / 128. Our samples are floats in [-1, 1], so they are first
quantised to 8 bits as a PNG would be (`to_inception_input`). `resize="half_pixel"` gives the
PyTorch/pytorch-fid convention instead (its FIDs differ slightly from TF's).

Weights: nothing is downloaded. Convert pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
(a port of the TF graph's weights) once, in an environment with torch:

    import torch, safetensors.torch
    sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu", weights_only=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "fid_inception.safetensors")

and pass the .safetensors (or an .npz with the same keys) to `jaxgen eval --inception-weights` or
set $JAXGEN_INCEPTION_WEIGHTS. The keys are pytorch-fid's (`Mixed_5b.branch1x1.conv.weight`,
`...bn.running_mean`, `fc.weight`, ...); `load_weights` checks every key and shape and names any
that is missing, unexpected or of the wrong shape. No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import CheckpointError, ConfigError
from jaxgen.metrics.features import FeatureNetwork

INPUT_SIZE = 299
NUM_CLASSES = 1008
BN_EPS = 1e-3


class BasicConv(nn.Module):
  """conv (no bias) -> batch norm (inference statistics) -> ReLU; padding symmetric per axis."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, (self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
    return nn.relu(x)


def _conv(features, kernel, stride=1, padding=(0, 0), name=None):
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv(features, kernel, stride, padding, name=name)


def avg_pool_exclude_padding(x):
  """3x3, stride 1, 'SAME' average pool that averages only the real (unpadded) inputs."""
  total = nn.pool(x, 0.0, jax.lax.add, (3, 3), (1, 1), ((1, 1), (1, 1)))
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = nn.pool(ones, 0.0, jax.lax.add, (3, 3), (1, 1), ((1, 1), (1, 1)))
  return total / count


def max_pool(x, stride, padding=0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _conv(64, 1, name="branch1x1")(x)
    b5 = _conv(64, 5, padding=2, name="branch5x5_2")(_conv(48, 1, name="branch5x5_1")(x))
    b3 = _conv(64, 1, name="branch3x3dbl_1")(x)
    b3 = _conv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = _conv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = _conv(self.pool_features, 1, name="branch_pool")(avg_pool_exclude_padding(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # 35x35 -> 17x17 grid reduction
  @nn.compact
  def __call__(self, x):
    b3 = _conv(384, 3, stride=2, name="branch3x3")(x)
    bd = _conv(64, 1, name="branch3x3dbl_1")(x)
    bd = _conv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = _conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, max_pool(x, 2)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    b1 = _conv(192, 1, name="branch1x1")(x)
    b7 = _conv(c, 1, name="branch7x7_1")(x)
    b7 = _conv(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = _conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = _conv(c, 1, name="branch7x7dbl_1")(x)
    bd = _conv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = _conv(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = _conv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = _conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = _conv(192, 1, name="branch_pool")(avg_pool_exclude_padding(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # 17x17 -> 8x8 grid reduction
  @nn.compact
  def __call__(self, x):
    b3 = _conv(320, 3, stride=2, name="branch3x3_2")(_conv(192, 1, name="branch3x3_1")(x))
    b7 = _conv(192, 1, name="branch7x7x3_1")(x)
    b7 = _conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = _conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = _conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, max_pool(x, 2)], axis=-1)


class InceptionE(nn.Module):
  max_pool_branch: bool  # True in the last block of the TF graph (Mixed_7c)

  @nn.compact
  def __call__(self, x):
    b1 = _conv(320, 1, name="branch1x1")(x)
    b3 = _conv(384, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([_conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          _conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = _conv(448, 1, name="branch3x3dbl_1")(x)
    bd = _conv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([_conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          _conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    pooled = max_pool(x, 1, padding=1) if self.max_pool_branch else avg_pool_exclude_padding(x)
    bp = _conv(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """x: (B, 299, 299, 3) already in the graph's input range -> {"pool_3": (B, 2048),
  "logits": (B, 1008)} (and the intermediate maps when `return_maps`)."""
  return_maps: bool = False

  @nn.compact
  def __call__(self, x):
    maps = {}
    x = _conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = _conv(32, 3, name="Conv2d_2a_3x3")(x)
    x = _conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = max_pool(x, 2)
    x = _conv(80, 1, name="Conv2d_3b_1x1")(x)
    x = _conv(192, 3, name="Conv2d_4a_3x3")(x)
    x = max_pool(x, 2)
    maps["stem"] = x
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    maps["mixed_5d"] = x
    x = InceptionB(name="Mixed_6a")(x)
    for name, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c, name=name)(x)
    maps["mixed_6e"] = x
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(False, name="Mixed_7b")(x)
    x = InceptionE(True, name="Mixed_7c")(x)
    maps["mixed_7c"] = x
    pool = jnp.mean(x, axis=(1, 2))
    out = {"pool_3": pool, "logits": nn.Dense(NUM_CLASSES, name="fc")(pool)}
    return out | maps if self.return_maps else out


# -- input conventions -----------------------------------------------------------------------------

def resize_matrix(in_size: int, out_size: int, mode: str = "tf1") -> np.ndarray:
  """(out, in) bilinear interpolation weights along one axis.

  tf1: TF1 ResizeBilinear(align_corners=False), source = i * in/out (the FID graph's resize).
  half_pixel: source = (i + 0.5) * in/out - 0.5, clamped at 0 (PyTorch align_corners=False)."""
  i = np.arange(out_size, dtype=np.float64)
  scale = in_size / out_size
  if mode == "tf1":
    src = i * scale
  elif mode == "half_pixel":
    src = np.maximum((i + 0.5) * scale - 0.5, 0.0)
  else:
    raise ValueError(f"resize mode must be tf1 or half_pixel, not '{mode}'")
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo
  m = np.zeros((out_size, in_size))
  np.add.at(m, (np.arange(out_size), lo), 1.0 - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m


def to_inception_input(images: jax.Array, resize: str = "tf1", quantize: bool = True) -> jax.Array:
  """Samples float NHWC in [-1, 1] (1 or 3 channels, any size) -> the graph's 299x299 input.

  8-bit quantisation (as saving a PNG would), grey -> RGB, bilinear resize, (x - 128) / 128."""
  x = (images.astype(jnp.float32) + 1.0) * 127.5
  if quantize:
    x = jnp.clip(jnp.round(x), 0.0, 255.0)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  h, w = x.shape[1:3]
  if (h, w) != (INPUT_SIZE, INPUT_SIZE):
    rh = jnp.asarray(resize_matrix(h, INPUT_SIZE, resize), jnp.float32)
    rw = jnp.asarray(resize_matrix(w, INPUT_SIZE, resize), jnp.float32)
    x = jnp.einsum("oh,bhwc,pw->bopc", rh, x, rw, precision=jax.lax.Precision.HIGHEST)
  return (x - 128.0) / 128.0


# -- weights ---------------------------------------------------------------------------------------

def _torch_name(path: Sequence[str]) -> tuple[str, str]:
  """A flax variable path -> (pytorch-fid key, layout); layout says how to convert the array."""
  *mods, leaf = path
  prefix = ".".join(mods)
  if mods[-1] == "conv":
    return f"{prefix}.weight", "oihw"
  if mods[-1] == "bn":
    return f"{prefix}." + {"scale": "weight", "bias": "bias", "mean": "running_mean",
                           "var": "running_var"}[leaf], "vector"
  if mods[-1] == "fc":
    return f"{prefix}.{'weight' if leaf == 'kernel' else 'bias'}", "oi" if leaf == "kernel" else "vector"
  raise ValueError(path)


def _to_flax(array: np.ndarray, layout: str) -> np.ndarray:
  if layout == "oihw":
    return np.transpose(array, (2, 3, 1, 0))
  if layout == "oi":
    return array.T
  return array


def _to_torch(array: np.ndarray, layout: str) -> np.ndarray:
  if layout == "oihw":
    return np.transpose(array, (3, 2, 0, 1))
  if layout == "oi":
    return array.T
  return array


def variable_shapes() -> dict:
  """The module's variables as a tree of ShapeDtypeStructs (no allocation)."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.PRNGKey(0), jnp.zeros(x.shape)))


def _flat_paths(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat_paths(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _set(tree, path, value):
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def read_tensor_file(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Arrays of a .safetensors or .npz file (never pickle)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise CheckpointError(f"Inception weights file '{path}' does not exist. Convert pytorch-fid's "
                          "weights once as described at the top of jaxgen/metrics/inception.py.")
  try:
    if path.suffix == ".safetensors":
      from safetensors.numpy import load_file
      return load_file(str(path))
    if path.suffix == ".npz":
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001  (both libraries raise assorted errors on damaged files)
    raise CheckpointError(f"Inception weights file '{path}' is damaged or not a {path.suffix} "
                          f"file: {e}") from None
  raise CheckpointError(f"Inception weights file '{path}' must be .safetensors or .npz "
                        "(pickled .pth files are not loaded; convert them first).")


def load_weights(path: str | pathlib.Path) -> dict:
  """The module's variables ({'params', 'batch_stats'}) from a pytorch-fid-keyed file."""
  tensors = read_tensor_file(path)
  variables: dict = {}
  problems, expected = [], set()
  for (collection, *module_path), shape in _flat_paths(variable_shapes()):
    key, layout = _torch_name(module_path)
    expected.add(key)
    if key not in tensors:
      problems.append(f"missing '{key}'")
      continue
    value = _to_flax(np.asarray(tensors[key], np.float32), layout)
    if value.shape != shape.shape:
      problems.append(f"'{key}' has shape {tuple(tensors[key].shape)}, expected "
                      f"{tuple(_to_torch(np.zeros(shape.shape), layout).shape)}")
      continue
    if not np.all(np.isfinite(value)):
      problems.append(f"'{key}' contains NaN or Inf")
      continue
    _set(variables, (collection, *module_path), jnp.asarray(value))
  unexpected = sorted(k for k in tensors if k not in expected and not k.endswith("num_batches_tracked"))
  problems += [f"unexpected '{k}'" for k in unexpected[:5]]
  if len(unexpected) > 5:
    problems.append(f"... and {len(unexpected) - 5} more unexpected keys")
  if problems:
    shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} problems)" if len(problems) > 8 else "")
    raise CheckpointError(f"Inception weights file '{path}' does not match the FID Inception-v3: "
                          f"{shown}. It must hold pytorch-fid's FID Inception weights (1008 classes), "
                          "converted as described in jaxgen/metrics/inception.py.")
  return variables


def export_weights(variables: dict, path: str | pathlib.Path) -> None:
  """Writes variables under pytorch-fid keys (npz or safetensors): the inverse of load_weights."""
  arrays = {}
  for (collection, *module_path), value in _flat_paths(jax.tree.map(np.asarray, variables)):
    key, layout = _torch_name(module_path)
    arrays[key] = np.ascontiguousarray(_to_torch(value, layout))
  path = pathlib.Path(path)
  if path.suffix == ".safetensors":
    from safetensors.numpy import save_file
    save_file(arrays, str(path))
  else:
    np.savez(path, **arrays)


def file_digest(path: str | pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()[:16]


def inception_network(weights: str | None = None, *, resize: str = "tf1",
                      batch_size: int = 100) -> FeatureNetwork:
  """The FID feature network: 2048-d pool_3 features and the 1008-way softmax."""
  weights = weights or os.environ.get("JAXGEN_INCEPTION_WEIGHTS")
  if not weights:
    raise ConfigError("FID Inception needs weights: pass --inception-weights FILE (.safetensors or "
                      ".npz, converted from pytorch-fid's pt_inception-2015-12-05 weights; see "
                      "jaxgen/metrics/inception.py) or set JAXGEN_INCEPTION_WEIGHTS. For digits, "
                      "shapes and toy2d the default features need no weights.")
  variables = load_weights(weights)
  model = FIDInceptionV3()

  @jax.jit
  def run(x):
    out = model.apply(variables, to_inception_input(x, resize))
    return {"features": out["pool_3"], "probs": jax.nn.softmax(out["logits"])}

  return FeatureNetwork(name=f"inception-fid-{resize}", dim=2048,
                        digest=f"{file_digest(weights)}-{resize}",
                        extract=lambda x: {k: np.asarray(v) for k, v in run(x).items()},
                        batch_size=batch_size, num_classes=NUM_CLASSES,
                        class_names=tuple(str(i) for i in range(NUM_CLASSES)))
