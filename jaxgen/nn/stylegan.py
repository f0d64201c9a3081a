"""StyleGAN (Karras et al. 2019) in pure XLA ops: mapping network, synthesis network with a learned
constant input, AdaIN style injection and per-layer noise at every resolution, style mixing and
the truncation trick; and its ProGAN discriminator with minibatch standard deviation. Progressive
growing (Karras et al. 2018) is an option of both networks, driven by a traced level of detail
`lod` (0: full resolution; r: the image comes from the 4 * 2^(L-1-r) level, fractional values fade
the next level in), so a growing run compiles once: every level is always computed and the output
is upsampled to full size, as in the official implementation's linear structure.

Equalised learning rate (ProGAN sec. 4.1): weights are drawn from N(0, 1 / lr_mul) and scaled at
run time by He's constant times lr_mul, gain * lr_mul / sqrt(fan_in), so Adam's per-parameter steps
act on every layer alike; the mapping network uses lr_mul = 0.01. The gain is sqrt(2) for the
layers a LeakyReLU follows (He et al. 2015: the activations' second moment is kept through the
network, so w depends on z from the first step) and 1 for the linear ones (styles, to_rgb, logit).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.gan import minibatch_stddev, resolution_levels
from jaxgen.nn.layers import Conv2D

STATS = "stylegan"  # collection of the running average of w (the truncation trick's centre)
LRELU_GAIN = math.sqrt(2.0)  # He's gain for the layers a LeakyReLU(0.2) follows


class EqualDense(nn.Module):
  features: int
  lr_mul: float = 1.0
  bias_init: float = 0.0
  gain: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.param("kernel", nn.initializers.normal(1.0 / self.lr_mul), (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_mul), (self.features,))
    return x @ (w * (self.gain * self.lr_mul / math.sqrt(x.shape[-1]))) + b * self.lr_mul


class EqualConv(nn.Module):
  """A 'SAME' convolution with an equalised learning rate: conv(x * c, w) = conv(x, c w)."""
  features: int
  kernel_size: int = 3
  conv_impl: str = "auto"
  gain: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.gain / math.sqrt(self.kernel_size ** 2 * x.shape[-1])
    conv = Conv2D(self.features, self.kernel_size, impl=self.conv_impl,
                  kernel_init=nn.initializers.normal(1.0), name="conv")
    return conv(x * scale)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.mean(x ** 2, axis=-1, keepdims=True) + eps)


def upsample2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample2(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def level_weights(lod: jax.Array, levels: int) -> list[jax.Array]:
  """alpha_i in [0, 1] for levels i = 1..levels-1: how much of level i replaces the upsampled
  image of level i - 1 (all 1 at lod 0, all 0 at lod = levels - 1)."""
  return [jnp.clip(levels - 1 - lod - (i - 1), 0.0, 1.0) for i in range(1, levels)]


def lod_schedule(step: jax.Array, levels: int, steps_per_phase: int) -> jax.Array:
  """ProGAN's schedule: `steps_per_phase` steps at 4x4, then for each next level a fade-in of that
  many steps (lod falls by 1 linearly) and as many steps stable. Returns a float32 lod."""
  t = step.astype(jnp.float32) / steps_per_phase
  lod = jnp.float32(levels - 1)
  for j in range(1, levels):
    lod = lod - jnp.clip(t - (2 * j - 1), 0.0, 1.0)
  return lod


def progressive_image(x: jax.Array, lod: jax.Array, levels: int) -> jax.Array:
  """What a real image looks like at level of detail lod: the same blend of box-downsampled and
  nearest-upsampled levels the generator outputs (the discriminator sees reals and fakes alike)."""
  pyramid = [x]
  for _ in range(levels - 1):
    pyramid.append(downsample2(pyramid[-1]))
  pyramid = pyramid[::-1]  # 4x4 first
  img = pyramid[0]
  for i, alpha in enumerate(level_weights(lod, levels), start=1):
    img = upsample2(img)
    img = img + alpha * (pyramid[i] - img)
  return img


class MappingNetwork(nn.Module):
  """z -> w: pixel norm, then `depth` EqualDense (gain sqrt 2) + LeakyReLU(0.2) layers at lr_mul 0.01."""
  w_dim: int = 512
  depth: int = 8
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = pixel_norm(z)
    for i in range(self.depth):
      h = nn.leaky_relu(EqualDense(self.w_dim, self.lr_mul, gain=LRELU_GAIN, name=f"dense{i}")(h), 0.2)
    return h


class StyleLayer(nn.Module):
  """Noise input (a per-pixel N(0, 1) image times a learned per-channel weight, init 0), bias,
  LeakyReLU, then AdaIN: instance-normalise and apply the style (y_s, y_b) = A(w), y_s around 1."""
  channels: int

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
    strength = self.param("noise_strength", nn.initializers.zeros, (self.channels,))
    x = x + noise * strength
    x = nn.leaky_relu(x + self.param("bias", nn.initializers.zeros, (self.channels,)), 0.2)
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=(1, 2), keepdims=True) + 1e-8)
    style = EqualDense(2 * self.channels, bias_init=0.0, name="affine")(w)
    scale, bias = jnp.split(style, 2, axis=-1)
    return x * (1.0 + scale[:, None, None, :]) + bias[:, None, None, :]


def channels_at(level: int, levels: int, base_ch: int, max_ch: int) -> int:
  """Channels at level i of `levels` (4 * 2^i pixels): base_ch at full resolution, doubling as
  the resolution halves, capped at max_ch (StyleGAN's fmap_base / resolution rule)."""
  return min(max_ch, base_ch * 2 ** (levels - 1 - level))


class SynthesisNetwork(nn.Module):
  """w per layer [B, num_layers, w_dim] -> image [B, S, S, channels]."""
  image_size: int = 32
  channels: int = 3
  base_ch: int = 64
  max_ch: int = 256
  progressive: bool = False
  conv_impl: str = "auto"

  @property
  def levels(self) -> int:
    return resolution_levels(self.image_size) + 1

  @property
  def num_layers(self) -> int:
    return 2 * self.levels

  @nn.compact
  def __call__(self, ws: jax.Array, noise_key: jax.Array, lod: jax.Array | float = 0.0,
               shared_noise: bool = False) -> jax.Array:
    """ws [B, num_layers, w_dim] -> images. shared_noise: one noise image per layer for the whole
    batch (interpolation grids, where only the styles should change along a row)."""
    b = ws.shape[0]
    keys = jax.random.split(noise_key, self.num_layers)
    noise = lambda i, h: jnp.broadcast_to(jax.random.normal(
        keys[i], ((1,) if shared_noise else h.shape[:1]) + h.shape[1:3] + (1,), h.dtype), h.shape[:3] + (1,))
    levels = self.levels
    ch0 = channels_at(0, levels, self.base_ch, self.max_ch)
    h = jnp.broadcast_to(self.param("const", nn.initializers.ones, (1, 4, 4, ch0)), (b, 4, 4, ch0))
    to_rgb = lambda i, x: EqualConv(self.channels, 1, self.conv_impl, name=f"to_rgb{i}")(x)
    image = None
    alphas = level_weights(jnp.asarray(lod, jnp.float32), self.levels)
    for i in range(self.levels):
      ch = channels_at(i, levels, self.base_ch, self.max_ch)
      if i == 0:
        h = StyleLayer(ch, name="layer0")(h, ws[:, 0], noise(0, h))
      else:
        h = EqualConv(ch, 3, self.conv_impl, LRELU_GAIN, name=f"conv{2 * i}")(upsample2(h))
        h = StyleLayer(ch, name=f"layer{2 * i}")(h, ws[:, 2 * i], noise(2 * i, h))
      h = EqualConv(ch, 3, self.conv_impl, LRELU_GAIN, name=f"conv{2 * i + 1}")(h)
      h = StyleLayer(ch, name=f"layer{2 * i + 1}")(h, ws[:, 2 * i + 1], noise(2 * i + 1, h))
      if self.progressive:
        rgb = to_rgb(i, h)
        image = rgb if image is None else upsample2(image) + alphas[i - 1] * (rgb - upsample2(image))
    if not self.progressive:
      image = to_rgb(self.levels - 1, h)
    return image


class StyleGANGenerator(nn.Module):
  """z [B, z_dim] -> image. `__call__(z, train, ...)` maps, mixes styles (train, with probability
  `mixing_prob`: a second latent's w from a random crossover layer on), updates the running mean of
  w (train; collection 'stylegan'), truncates (sampling: w_avg + psi (w - w_avg) on the first
  `truncation_cutoff` layers, all when 0) and synthesises."""
  image_size: int = 32
  channels: int = 3
  z_dim: int = 512
  w_dim: int = 512
  mapping_depth: int = 8
  base_ch: int = 64
  max_ch: int = 256
  mixing_prob: float = 0.9
  w_avg_decay: float = 0.995
  truncation_cutoff: int = 0
  progressive: bool = False
  conv_impl: str = "auto"

  def setup(self):
    self.mapping = MappingNetwork(self.w_dim, self.mapping_depth)
    self.synthesis = SynthesisNetwork(self.image_size, self.channels, self.base_ch, self.max_ch,
                                      self.progressive, self.conv_impl)
    self.w_avg = self.variable(STATS, "w_avg", jnp.zeros, (self.w_dim,))

  def __call__(self, z: jax.Array, train: bool = False, *, key: jax.Array | None = None,
               lod: jax.Array | float = 0.0, truncation: jax.Array | float = 1.0) -> jax.Array:
    key = jax.random.PRNGKey(0) if key is None else key
    noise_key, mix_key, z2_key, cut_key = jax.random.split(key, 4)
    num_layers = self.synthesis.num_layers
    w = self.mapping(z)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], num_layers, w.shape[-1]))
    if train:
      if not self.is_initializing():
        self.w_avg.value = jnp.mean(w, axis=0) + self.w_avg_decay * (
            self.w_avg.value - jnp.mean(w, axis=0))
      if self.mixing_prob > 0:
        w2 = self.mapping(jax.random.normal(z2_key, z.shape, z.dtype))
        mix = jax.random.uniform(mix_key, (z.shape[0],)) < self.mixing_prob
        cut = jnp.where(mix, jax.random.randint(cut_key, (z.shape[0],), 1, num_layers), num_layers)
        second = jnp.arange(num_layers)[None, :] >= cut[:, None]
        ws = jnp.where(second[..., None], w2[:, None], ws)
    else:
      ws = self._truncate(ws, truncation)
    return self.synthesis(ws, noise_key, lod)

  def _truncate(self, ws: jax.Array, truncation) -> jax.Array:
    cutoff = self.truncation_cutoff or self.synthesis.num_layers
    centre = jax.lax.stop_gradient(self.w_avg.value)
    truncated = centre + jnp.asarray(truncation, ws.dtype) * (ws - centre)
    return jnp.where((jnp.arange(ws.shape[1]) < cutoff)[None, :, None], truncated, ws)

  def styles(self, z: jax.Array, truncation: jax.Array | float = 1.0) -> jax.Array:
    """z [B, z_dim] -> the per-layer styles [B, num_layers, w_dim] that sampling synthesises
    (mapped, truncated; no mixing)."""
    w = self.mapping(z)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], self.synthesis.num_layers, w.shape[-1]))
    return self._truncate(ws, truncation)

  def synthesize(self, ws: jax.Array, key: jax.Array, lod: jax.Array | float = 0.0,
                 shared_noise: bool = False) -> jax.Array:
    """Per-layer styles [B, num_layers, w_dim] -> images (the synthesis network alone)."""
    return self.synthesis(ws, jax.random.split(key, 4)[0], lod, shared_noise)


class StyleGANDiscriminator(nn.Module):
  """ProGAN's discriminator: from_rgb at the top level, per level two 3x3 convolutions and a 2x box
  downsample (LeakyReLU 0.2, equalised learning rate), minibatch stddev at 4x4, a 3x3 convolution,
  a dense layer and the logit. Progressive: at lod > 0 the lower levels' from_rgb of the
  downsampled input fade in as the generator's levels do."""
  image_size: int = 32
  base_ch: int = 64
  max_ch: int = 256
  minibatch_std_group: int = 4
  progressive: bool = False
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, *, lod: jax.Array | float = 0.0) -> jax.Array:
    levels = resolution_levels(self.image_size) + 1
    act = lambda v: nn.leaky_relu(v, 0.2)
    width = lambda i: channels_at(i, levels, self.base_ch, self.max_ch)
    from_rgb = lambda i, img: act(EqualConv(width(i), 1, self.conv_impl, LRELU_GAIN,
                                            name=f"from_rgb{i}")(img))
    alphas = level_weights(jnp.asarray(lod, jnp.float32), levels)
    h = from_rgb(levels - 1, x)
    img = x
    for i in range(levels - 1, 0, -1):
      h = act(EqualConv(width(i), 3, self.conv_impl, LRELU_GAIN, name=f"conv{i}a")(h))
      h = downsample2(act(EqualConv(width(i - 1), 3, self.conv_impl, LRELU_GAIN, name=f"conv{i}b")(h)))
      if self.progressive:
        img = downsample2(img)
        lower = from_rgb(i - 1, img)
        h = lower + alphas[i - 1] * (h - lower)
    if self.minibatch_std_group:
      h = minibatch_stddev(h, self.minibatch_std_group)
    h = act(EqualConv(width(0), 3, self.conv_impl, LRELU_GAIN, name="conv0")(h))
    h = act(EqualDense(width(0), gain=LRELU_GAIN, name="dense")(h.reshape(h.shape[0], -1)))
    return EqualDense(1, name="logit")(h)[..., 0]
