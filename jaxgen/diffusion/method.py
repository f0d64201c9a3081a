"""DDPM as a method for the training engine: eps-prediction network, L_simple, ancestral sampling.

Images use the U-Net (model.name=unet); the 2D toy mixtures (data.name=toy2d) use the residual MLP
(model.name=mlp), trained on the 'point' field of the batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxgen import method as method_lib
from jaxgen.diffusion import ddpm, likelihood
from jaxgen.diffusion.schedules import check_betas, linear_betas, make_schedule
from jaxgen.errors import ConfigError
from jaxgen.nn.mlp import MLPDenoiser
from jaxgen.nn.unet import UNet, check_unet_config
from jaxgen.samplers.ddpm import ddpm_ancestral


def is_points(config: ml_collections.ConfigDict) -> bool:
  return config.data.name == "toy2d"


def data_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The shape of one example: (H, W, C) for images, (2,) for 2D points."""
  if is_points(config):
    return (2,)
  return (config.data.image_size, config.data.image_size, config.data.channels)


def batch_field(config: ml_collections.ConfigDict) -> str:
  return "point" if is_points(config) else "image"


def _validate_mlp(m: ml_collections.ConfigDict) -> None:
  for key in ("hidden", "depth", "time_dim"):
    if m.get(key, 1) < 1:
      raise ConfigError(f"Config key 'model.{key}' must be >= 1, got {m.get(key)}.")
  if not 0.0 <= m.get("dropout", 0.0) < 1.0:
    raise ConfigError(f"Config key 'model.dropout' must lie in [0, 1), got {m.dropout}.")


def validate(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  expected = "mlp" if is_points(config) else "unet"
  if m.name != expected:
    raise ConfigError(f"Config key 'model.name' is '{m.name}'; the ddpm method uses '{expected}' "
                      f"for data.name={d.name}.")
  if m.name == "mlp":
    _validate_mlp(m)
  else:
    _validate_unet(config)
  _validate_diffusion(config)


def _validate_unet(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  if d.image_size <= 0 or d.channels not in (1, 3):
    raise ConfigError("Config keys 'data.image_size' (> 0) and 'data.channels' (1 or 3) are "
                      f"invalid: {d.image_size}, {d.channels}.")
  try:
    check_unet_config(d.image_size, m.ch, m.ch_mult, m.attn_resolutions, m.num_groups)
  except ValueError as e:
    raise ConfigError(f"Config section 'model' does not fit data.image_size={d.image_size}: {e}.") from None
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f"Config key 'model.dropout' must lie in [0, 1), got {m.dropout}.")
  if m.conv_impl not in ("auto", "xla", "im2col"):
    raise ConfigError(f"Config key 'model.conv_impl' must be auto, xla or im2col, not '{m.conv_impl}'.")
  if m.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"Config key 'model.dtype' must be float32 or bfloat16, not '{m.dtype}'.")


def _validate_diffusion(config: ml_collections.ConfigDict) -> None:
  diff = config.diffusion
  if diff.schedule != "linear":
    raise ConfigError(f"Config key 'diffusion.schedule' must be 'linear', not '{diff.schedule}'.")
  if diff.num_timesteps < 1:
    raise ConfigError("Config key 'diffusion.num_timesteps' must be >= 1.")
  if not diff.beta_start <= diff.beta_end:
    raise ConfigError(f"Config keys 'diffusion.beta_start' ({diff.beta_start}) and "
                      f"'diffusion.beta_end' ({diff.beta_end}): the schedule must not decrease.")
  try:
    check_betas(linear_betas(diff.num_timesteps, diff.beta_start, diff.beta_end))
  except ValueError as e:
    raise ConfigError(f"Config section 'diffusion': {e}.") from None
  if config.sample.variance not in ("fixed_small", "fixed_large"):
    raise ConfigError(f"Config key 'sample.variance' must be fixed_small or fixed_large, "
                      f"not '{config.sample.variance}'.")


def build_backbone(config: ml_collections.ConfigDict):
  m = config.model
  if m.name == "mlp":
    return MLPDenoiser(hidden=m.hidden, depth=m.depth, time_dim=m.time_dim,
                       dropout=m.get("dropout", 0.0))
  return UNet(ch=m.ch, out_ch=config.data.channels, ch_mult=tuple(m.ch_mult),
              num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
              dropout=m.dropout, num_groups=m.num_groups, num_heads=m.get("num_heads", 1),
              remat=m.remat, conv_impl=m.conv_impl, dtype=m.dtype)


def build(config: ml_collections.ConfigDict) -> method_lib.Method:
  shape = data_shape(config)
  field = batch_field(config)
  model = build_backbone(config)
  d = config.diffusion
  schedule = make_schedule(d.schedule, d.num_timesteps, d.beta_start, d.beta_end)

  def init(key):
    x = jnp.zeros((1,) + shape, jnp.float32)
    return model.init({"params": key}, x, jnp.zeros((1,), jnp.int32), False)

  def loss(params, batch, key):
    def eps_fn(x_t, t, model_key):
      return model.apply({"params": params}, x_t, t, True, rngs={"dropout": model_key})
    return ddpm.eps_mse_loss(eps_fn, schedule, batch[field], key)

  def sample(params, mutable, key, num, trajectory_every=0, sampler="ancestral", steps=None):
    del mutable
    if sampler != "ancestral" or steps not in (None, d.num_timesteps):
      raise ConfigError(f"The ddpm method samples with sampler 'ancestral' over all "
                        f"{d.num_timesteps} steps; got sampler '{sampler}' with steps {steps}.")
    noise_key, step_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (num,) + shape, jnp.float32)
    eps_fn = lambda x, t: model.apply({"params": params}, x, t, False)
    return ddpm_ancestral(eps_fn, schedule, noise, step_key, variance=config.sample.variance,
                          clip_x0=config.sample.clip_x0, trajectory_every=trajectory_every)

  def bpd(params, mutable, x0, key):
    del mutable
    eps_fn = lambda x, t: model.apply({"params": params}, x, t, False)
    return likelihood.bits_per_dim(eps_fn, schedule, x0, key, variance=config.sample.variance,
                                   clip_x0=config.sample.clip_x0, discrete=not is_points(config))

  return method_lib.Method(name="ddpm", model=model, init=init, loss=method_lib.pure_loss(loss),
                           sample=sample, bpd=bpd)


method_lib.register("ddpm", build, validate)
