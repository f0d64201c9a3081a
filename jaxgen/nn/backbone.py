"""The backbone a config names, shared by every method that trains a network on images or points.

Images use the U-Net (model.name=unet); the 2D toy mixtures (data.name=toy2d) use the residual MLP
(model.name=mlp), trained on the 'point' field of the batch. Methods choose what the network's
time input and output mean; this module only builds and checks the network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.data import builtin, couplings
from jaxgen.errors import ConfigError
from jaxgen.nn.mlp import MLPDenoiser
from jaxgen.nn.unet import UNet, check_unet_config


def is_points(config: ml_collections.ConfigDict) -> bool:
  if config.data.name == "couplings":
    return couplings.read_meta(config.data.path)["field"] == "point"
  return config.data.name == "toy2d"


def data_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The shape of one example: (H, W, C) for images, (2,) for 2D points."""
  if is_points(config):
    return (2,)
  return (config.data.image_size, config.data.image_size, config.data.channels)


def _validate_couplings(config: ml_collections.ConfigDict) -> None:
  """A coupling dataset's stored shape must be the one the config's network is built for."""
  if config.data.name != "couplings":
    return
  meta = couplings.read_meta(config.data.path)
  if tuple(meta["shape"]) != data_shape(config):
    raise ConfigError(f"The coupling dataset '{config.data.path}' holds examples of shape "
                      f"{tuple(meta['shape'])}, but data.image_size / data.channels describe "
                      f"{data_shape(config)}. Use the data section of the run that wrote it.")
  if config.data.get("random_flip", False):
    raise ConfigError("Config key 'data.random_flip' must be False for a coupling dataset: "
                      "flipping the image would break its pairing with the stored noise.")


def batch_field(config: ml_collections.ConfigDict) -> str:
  return "point" if is_points(config) else "image"


def validate_backbone(config: ml_collections.ConfigDict, method: str) -> None:
  _validate_couplings(config)
  m, d = config.model, config.data
  expected = "mlp" if is_points(config) else "unet"
  if m.name != expected:
    raise ConfigError(f"Config key 'model.name' is '{m.name}'; the {method} method uses '{expected}' "
                      f"for data.name={d.name}.")
  if m.name == "mlp":
    _validate_mlp(m)
  else:
    _validate_unet(config)
  _validate_classes(config)


def _validate_mlp(m: ml_collections.ConfigDict) -> None:
  for key in ("hidden", "depth", "time_dim"):
    if m.get(key, 1) < 1:
      raise ConfigError(f"Config key 'model.{key}' must be >= 1, got {m.get(key)}.")
  if not 0.0 <= m.get("dropout", 0.0) < 1.0:
    raise ConfigError(f"Config key 'model.dropout' must lie in [0, 1), got {m.dropout}.")


def _validate_unet(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  if d.image_size <= 0 or d.channels not in (1, 3):
    raise ConfigError("Config keys 'data.image_size' (> 0) and 'data.channels' (1 or 3) are "
                      f"invalid: {d.image_size}, {d.channels}.")
  try:
    check_unet_config(d.image_size, m.ch, m.ch_mult, m.attn_resolutions, m.num_groups,
                      m.get("num_head_channels", 0), m.get("num_heads", 1))
  except ValueError as e:
    raise ConfigError(f"Config section 'model' does not fit data.image_size={d.image_size}: {e}.") from None
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f"Config key 'model.dropout' must lie in [0, 1), got {m.dropout}.")
  if m.conv_impl not in ("auto", "xla", "im2col"):
    raise ConfigError(f"Config key 'model.conv_impl' must be auto, xla or im2col, not '{m.conv_impl}'.")
  if m.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"Config key 'model.dtype' must be float32 or bfloat16, not '{m.dtype}'.")


def _validate_classes(config: ml_collections.ConfigDict) -> None:
  num_classes = config.model.get("num_classes", 0)
  if num_classes < 0:
    raise ConfigError(f"Config key 'model.num_classes' must be >= 0, got {num_classes}.")
  if num_classes and is_points(config):
    raise ConfigError("Config key 'model.num_classes': the 2D MLP has no class conditioning; set it to 0.")
  known = len(builtin.CLASS_NAMES.get(config.data.name, ()))
  if num_classes and known and num_classes != known:
    raise ConfigError(f"Config key 'model.num_classes' is {num_classes} but dataset "
                      f"'{config.data.name}' has {known} classes.")


def build_backbone(config: ml_collections.ConfigDict, out_mult: int = 1):
  """The flax module: (x, t, train[, labels]) -> output with out_mult x the data's channels."""
  m = config.model
  if m.name == "mlp":
    return MLPDenoiser(hidden=m.hidden, depth=m.depth, time_dim=m.time_dim,
                       dropout=m.get("dropout", 0.0), out_mult=out_mult)
  return UNet(ch=m.ch, out_ch=config.data.channels * out_mult, ch_mult=tuple(m.ch_mult),
              num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
              dropout=m.dropout, num_groups=m.num_groups, num_heads=m.get("num_heads", 1),
              num_head_channels=m.get("num_head_channels", 0),
              resblock_updown=m.get("resblock_updown", False),
              scale_shift_norm=m.get("scale_shift_norm", False),
              num_classes=m.get("num_classes", 0), remat=m.remat, conv_impl=m.conv_impl,
              dtype=m.dtype)


def init_variables(model, config: ml_collections.ConfigDict, key: jax.Array):
  """The module's variables from a batch of one zero example (and label 0 when conditional)."""
  x = jnp.zeros((1,) + data_shape(config), jnp.float32)
  extra = (jnp.zeros((1,), jnp.int32),) if config.model.get("num_classes", 0) else ()
  return model.init({"params": key}, x, jnp.zeros((1,), jnp.float32), False, *extra)


def default_labels(num: int, num_classes: int) -> jax.Array:
  """Equal contiguous blocks of each class: with num = 8 K, each row of an 8-wide grid is a class."""
  return (jnp.arange(num) * num_classes // num).astype(jnp.int32)


def drop_labels(key: jax.Array, labels: jax.Array, probability: float, null_label: int) -> jax.Array:
  """Classifier-free guidance training: each label becomes the null label with this probability."""
  labels = labels.astype(jnp.int32)
  return jnp.where(jax.random.bernoulli(key, probability, labels.shape), null_label, labels)


def trajectory_indices(num_points: int, every: int) -> np.ndarray:
  """Every `every`-th of num_points grid points, and always the last (the sample)."""
  return np.unique(np.append(np.arange(0, num_points, every), num_points - 1))
