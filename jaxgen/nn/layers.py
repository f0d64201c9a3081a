"""flax.linen building blocks shared by the backbones.

`Conv2D` keeps the parameter layout of `nn.Conv` (kernel (kh, kw, in, out), bias (out,)) but can
compute the convolution two ways:
- "xla": `lax.conv_general_dilated`, the obvious choice on GPU/TPU;
- "im2col": gather the kh*kw shifted views into the channel axis and do one matmul. The backward
  pass of a matmul is two matmuls, which sidesteps XLA:CPU's slow weight-gradient convolution.
"auto" picks im2col on CPU and xla elsewhere; `jaxgen bench conv` measures the choice.
Checkpoints are interchangeable between the two.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# DDPM's initialisation (the TF reference's variance_scaling with fan_avg, uniform).
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def zero_like_init(scale: float = 1e-10):
  """Near-zero init for the last layer of a residual branch, as in the DDPM reference."""
  return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def resolve_conv_impl(impl: str) -> str:
  if impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  if impl not in ("xla", "im2col"):
    raise ValueError(f"conv impl must be auto, xla or im2col, not '{impl}'")
  return impl


def _im2col(x: jax.Array, kh: int, kw: int, stride: int) -> jax.Array:
  """(B, H, W, C) -> (B, H', W', kh*kw*C) patches of a 'SAME'-padded convolution."""
  b, h, w, c = x.shape
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + kh - h, 0)
  pad_w = max((out_w - 1) * stride + kw - w, 0)
  x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  views = []
  for dy in range(kh):
    for dx in range(kw):
      views.append(jax.lax.slice(x, (0, dy, dx, 0),
                                 (b, dy + (out_h - 1) * stride + 1, dx + (out_w - 1) * stride + 1, c),
                                 (1, stride, stride, 1)))
  return jnp.concatenate(views, axis=-1)


class Conv2D(nn.Module):
  features: int
  kernel_size: int = 3
  stride: int = 1
  impl: str = "auto"
  dtype: Dtype = jnp.float32
  kernel_init: Any = default_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if k == 1 and self.stride == 1:
      y = jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    elif resolve_conv_impl(self.impl) == "im2col":
      patches = _im2col(x, k, k, self.stride)
      y = jnp.einsum("bhwp,pd->bhwd", patches, kernel.reshape(k * k * x.shape[-1], self.features))
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (self.stride, self.stride), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Transformer-style embedding of (possibly fractional) timesteps, as in DDPM: [sin, cos]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def resample(x: jax.Array, how: str) -> jax.Array:
  """"up": nearest-neighbour 2x; "down": 2x2 average pooling; "none": x."""
  if how == "up":
    b, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)
  if how == "down":
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return x


class ResBlock(nn.Module):
  """GroupNorm-swish-conv twice, the time embedding added in between, dropout before the 2nd conv.

  ADM options (Dhariwal & Nichol 2021): `scale_shift_norm` injects the embedding as
  GroupNorm(h) * (1 + scale) + shift instead of adding it; `resample` "up"/"down" makes this a
  BigGAN-style resampling block (both paths resampled after the first norm: nearest-neighbour up,
  average-pool down).
  """
  out_ch: int
  dropout: float = 0.0
  num_groups: int = 32
  conv_impl: str = "auto"
  dtype: Dtype = jnp.float32
  scale_shift_norm: bool = False
  resample: str = "none"

  @nn.compact
  def __call__(self, x, temb, train: bool):
    conv = lambda f, **kw: Conv2D(f, impl=self.conv_impl, dtype=self.dtype, **kw)
    h = nn.swish(nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype)(x))
    h, x = resample(h, self.resample), resample(x, self.resample)
    h = conv(self.out_ch)(h)
    emb_ch = 2 * self.out_ch if self.scale_shift_norm else self.out_ch
    emb = nn.Dense(emb_ch, kernel_init=default_init, dtype=self.dtype)(nn.swish(temb))[:, None, None, :]
    if self.scale_shift_norm:
      scale, shift = jnp.split(emb, 2, axis=-1)
      h = nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype)(h) * (1 + scale) + shift
    else:
      h = nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype)(h + emb)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.swish(h))
    h = conv(self.out_ch, kernel_init=zero_like_init())(h)
    if x.shape[-1] != self.out_ch:
      x = conv(self.out_ch, kernel_size=1)(x)
    return x + h


class AttnBlock(nn.Module):
  """Self-attention over all spatial positions with a residual connection (multi-head optional)."""
  num_heads: int = 1
  num_groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"attention channels {c} not divisible by num_heads {self.num_heads}")
    y = nn.GroupNorm(num_groups=self.num_groups, dtype=self.dtype)(x).reshape(b, h * w, c)
    qkv = nn.DenseGeneral((3, self.num_heads, c // self.num_heads), kernel_init=default_init,
                          dtype=self.dtype, name="qkv")(y)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    y = jax.nn.dot_product_attention(q, k, v)  # (b, hw, heads, head_dim), softmax in f32
    y = nn.DenseGeneral(c, axis=(-2, -1), kernel_init=zero_like_init(), dtype=self.dtype,
                        name="proj")(y)
    return x + y.reshape(b, h, w, c)


class Downsample(nn.Module):
  conv_impl: str = "auto"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return Conv2D(x.shape[-1], stride=2, impl=self.conv_impl, dtype=self.dtype)(x)


class Upsample(nn.Module):
  """Nearest-neighbour 2x, then a 3x3 convolution."""
  conv_impl: str = "auto"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return Conv2D(x.shape[-1], impl=self.conv_impl, dtype=self.dtype)(resample(x, "up"))


def _conv_transpose_padding(k: int, s: int) -> tuple[int, int]:
  """lax.conv_transpose's 'SAME' padding of the dilated input (output size = input size * s)."""
  total = k + s - 2
  before = k - 1 if s > k - 1 else -(-total // 2)
  return before, total - before


def _subpixel_conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 4x4 stride-2 'SAME' transposed convolution without the zeros: output pixel (2i + p, 2j + q)
  only meets the kernel taps of parity (p, q), a 2x2 sub-kernel over input pixels (i + p - 1 .. i + p,
  j + q - 1 .. j + q). Four 2x2 convolutions (one matmul each) and an interleave: a quarter of the
  zero-inserted form's work."""
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  phases = []
  for p in range(2):
    row = []
    for q in range(2):
      patches = jnp.concatenate([xp[:, p + dy:p + dy + h, q + dx:q + dx + w, :]
                                 for dy in range(2) for dx in range(2)], axis=-1)
      sub = kernel[p::2, q::2].reshape(4 * c, kernel.shape[-1])
      row.append(jnp.einsum("bhwp,pd->bhwd", patches, sub))
    phases.append(jnp.stack(row, axis=3))            # [B, h, w, 2 (q), F]
  y = jnp.stack(phases, axis=2)                        # [B, h, 2 (p), w, 2 (q), F]
  return y.reshape(b, 2 * h, 2 * w, kernel.shape[-1])


class ConvTranspose2D(nn.Module):
  """`nn.ConvTranspose(features, (k, k), (s, s), padding='SAME')` with the same parameters, computed
  as XLA's transposed convolution ("xla") or, on CPU ("im2col"), as matmuls: four 2x2 sub-kernel
  matmuls for DCGAN's 4x4 stride 2, else zeros inserted between the input's pixels, padding and
  one im2col matmul. XLA:CPU's gradient of a transposed convolution is slow, and a matmul's
  gradients are two matmuls."""
  features: int
  kernel_size: int = 4
  stride: int = 2
  impl: str = "auto"
  dtype: Dtype = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.stride
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if resolve_conv_impl(self.impl) == "xla":
      y = jax.lax.conv_transpose(x, kernel, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    elif (k, s) == (4, 2):
      y = _subpixel_conv_transpose_4x4_s2(x, kernel)
    else:
      b, h, w, c = x.shape
      dilated = jnp.zeros((b, (h - 1) * s + 1, (w - 1) * s + 1, c), x.dtype).at[:, ::s, ::s].set(x)
      lo, hi = _conv_transpose_padding(k, s)
      padded = jnp.pad(dilated, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
      out_h, out_w = padded.shape[1] - k + 1, padded.shape[2] - k + 1
      views = [jax.lax.slice(padded, (0, dy, dx, 0), (b, dy + out_h, dx + out_w, c))
               for dy in range(k) for dx in range(k)]
      y = jnp.einsum("bhwp,pd->bhwd", jnp.concatenate(views, axis=-1),
                     kernel.reshape(k * k * c, self.features))
    return y + bias.astype(self.dtype)
