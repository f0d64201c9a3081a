"""A residual MLP denoiser for low-dimensional data (the 2D toy mixtures)."""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxgen.nn.layers import sinusoidal_embedding


class MLPDenoiser(nn.Module):
  """x (B, D), t (B,) -> (B, D). Residual blocks of LayerNorm-swish-Dense with the time
  embedding added to every block's input (the low-dimensional analogue of the U-Net ResBlock)."""
  hidden: int = 256
  depth: int = 4
  time_dim: int = 64
  dropout: float = 0.0
  out_mult: int = 1  # 2 for a learned variance: the output holds mean and variance channels

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, train: bool = False) -> jax.Array:
    emb = sinusoidal_embedding(t, self.time_dim)
    emb = nn.Dense(self.hidden, name="time_dense0")(emb)
    emb = nn.Dense(self.hidden, name="time_dense1")(nn.swish(emb))
    h = nn.Dense(self.hidden, name="dense_in")(x)
    for i in range(self.depth):
      r = nn.LayerNorm(name=f"block{i}_norm")(h + emb)
      r = nn.Dense(self.hidden, name=f"block{i}_dense0")(nn.swish(r))
      r = nn.Dropout(self.dropout, deterministic=not train)(nn.swish(r))
      h = h + nn.Dense(self.hidden, name=f"block{i}_dense1")(r)
    out = nn.Dense(x.shape[-1] * self.out_mult, kernel_init=nn.initializers.zeros, name="dense_out")
    return out(nn.swish(nn.LayerNorm(name="norm_out")(h)))
