"""The DDPM U-Net (Ho et al. 2020, appendix B; the architecture of PixelCNN++ with attention).

Levels of `num_res_blocks` residual blocks at channel multipliers `ch_mult`, halving the resolution
between levels, self-attention at the resolutions in `attn_resolutions`, a middle block of
res-attention-res, and a mirrored upsampling path that concatenates the skip activations. The
timestep enters through a sinusoidal embedding and a two-layer MLP added inside every residual block.

The improved-DDPM / ADM options (Nichol & Dhariwal 2021; Dhariwal & Nichol 2021): `resblock_updown`
(BigGAN-style residual blocks do the down/upsampling), `scale_shift_norm` (adaptive group norm from
the embedding), multi-head attention (`num_heads`, or `num_head_channels` per head) at any set of
resolutions, and class conditioning: `num_classes` > 0 adds a learned class embedding to the time
embedding, with one extra "null" class (index num_classes) for classifier-free guidance.
`dtype="bfloat16"` computes activations in bf16 while parameters stay float32.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.layers import (AttnBlock, Conv2D, Downsample, ResBlock, Upsample, default_init,
                              sinusoidal_embedding, zero_like_init)


def check_unet_config(image_size: int, ch: int, ch_mult: Sequence[int],
                      attn_resolutions: Sequence[int], num_groups: int,
                      num_head_channels: int = 0, num_heads: int = 1) -> None:
  """Raises ValueError for shapes the U-Net cannot handle (called at config time)."""
  levels = len(ch_mult)
  if levels < 1 or ch < 1 or any(m < 1 for m in ch_mult):
    raise ValueError(f"ch ({ch}) and every ch_mult entry ({tuple(ch_mult)}) must be >= 1")
  if image_size % (2 ** (levels - 1)):
    raise ValueError(f"image size {image_size} cannot be halved {levels - 1} times "
                     f"(len(ch_mult)-1); use a size divisible by {2 ** (levels - 1)} or fewer levels")
  resolutions = {image_size // 2 ** i for i in range(levels)}
  missing = sorted(set(attn_resolutions) - resolutions)
  if missing:
    raise ValueError(f"attention resolutions {missing} never occur; the U-Net's resolutions are "
                     f"{sorted(resolutions, reverse=True)}")
  for m in ch_mult:
    if (ch * m) % num_groups:
      raise ValueError(f"channels {ch * m} (ch={ch} x {m}) not divisible by num_groups={num_groups}")
    head_div = num_head_channels if num_head_channels > 0 else num_heads
    if (ch * m) % head_div:
      raise ValueError(f"channels {ch * m} not divisible by "
                       + (f"num_head_channels={num_head_channels}" if num_head_channels > 0
                          else f"num_heads={num_heads}"))


class UNet(nn.Module):
  ch: int = 128
  out_ch: int = 3
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  num_groups: int = 32
  num_heads: int = 1
  num_head_channels: int = 0  # > 0: heads of this width (overrides num_heads)
  resblock_updown: bool = False
  scale_shift_norm: bool = False
  num_classes: int = 0
  remat: bool = False
  conv_impl: str = "auto"
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, train: bool = False,
               labels: jax.Array | None = None) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    # Rematerialise residual blocks in the backward pass: trades compute for activation memory.
    res_block = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
    # Explicit names keep parameter paths identical with and without remat.
    block = lambda out, name, how="none": res_block(
        out, self.dropout, self.num_groups, self.conv_impl, dtype, self.scale_shift_norm, how,
        name=name)

    def attn(name, channels):
      heads = channels // self.num_head_channels if self.num_head_channels > 0 else self.num_heads
      return AttnBlock(heads, self.num_groups, dtype, name=name)

    temb = sinusoidal_embedding(t, self.ch)
    temb = nn.Dense(4 * self.ch, kernel_init=default_init, name="temb_dense0")(temb)
    temb = nn.Dense(4 * self.ch, kernel_init=default_init, name="temb_dense1")(nn.swish(temb))
    if self.num_classes > 0:
      if labels is None:
        raise ValueError("a class-conditional U-Net needs labels (use num_classes for the null class)")
      temb = temb + nn.Embed(self.num_classes + 1, 4 * self.ch, name="class_embed")(labels)
    temb = temb.astype(dtype)

    h = Conv2D(self.ch, impl=self.conv_impl, dtype=dtype, name="conv_in")(x)
    skips = [h]
    for level, mult in enumerate(self.ch_mult):
      for i in range(self.num_res_blocks):
        h = block(self.ch * mult, f"down{level}_res{i}")(h, temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn(f"down{level}_attn{i}", h.shape[-1])(h)
        skips.append(h)
      if level != len(self.ch_mult) - 1:
        if self.resblock_updown:
          h = block(h.shape[-1], f"down{level}_downsample", "down")(h, temb, train)
        else:
          h = Downsample(self.conv_impl, dtype, name=f"down{level}_downsample")(h)
        skips.append(h)

    h = block(h.shape[-1], "mid_res0")(h, temb, train)
    h = attn("mid_attn", h.shape[-1])(h)
    h = block(h.shape[-1], "mid_res1")(h, temb, train)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for i in range(self.num_res_blocks + 1):
        h = block(self.ch * mult, f"up{level}_res{i}")(jnp.concatenate([h, skips.pop()], axis=-1), temb, train)
        if h.shape[1] in self.attn_resolutions:
          h = attn(f"up{level}_attn{i}", h.shape[-1])(h)
      if level != 0:
        if self.resblock_updown:
          h = block(h.shape[-1], f"up{level}_upsample", "up")(h, temb, train)
        else:
          h = Upsample(self.conv_impl, dtype, name=f"up{level}_upsample")(h)
    assert not skips

    h = nn.swish(nn.GroupNorm(num_groups=self.num_groups, dtype=dtype, name="norm_out")(h))
    h = Conv2D(self.out_ch, impl=self.conv_impl, dtype=dtype, kernel_init=zero_like_init(),
               name="conv_out")(h)
    return h.astype(jnp.float32)
