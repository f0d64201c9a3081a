"""GAN networks (flax.linen): DCGAN generator and discriminator, PatchGAN, and PacGAN's MLPs for 2D
data, with the discriminator-side stabilisers as layers (spectral normalisation on any layer,
minibatch discrimination, minibatch standard deviation).

Calling convention:
- generators: `G(z, train) -> x` (images NHWC in [-1, 1] through tanh; points unbounded);
- discriminators: `D(x, train) -> logits` of shape [B] (PatchGAN: [B, h, w], one logit a patch).
Discriminators take packed inputs as they come (PacGAN: m examples concatenated along the last
axis, done by the method), so `in_features` is whatever the packed input has.

Collections: `batch_stats` (BatchNorm running statistics) and `spectral` (the power iteration's u
vector and the last sigma per normalised weight). Spectral normalisation divides a layer's weight,
reshaped to a matrix (fan-in x out), by its largest singular value estimated by power iteration
(Miyato et al. 2018); the iteration advances only when the discriminator trains (update_stats).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.layers import Conv2D, ConvTranspose2D

SPECTRAL = "spectral"
NORMS = ("none", "batch", "layer", "instance")


def resolution_levels(image_size: int) -> int:
  """Number of doublings from 4x4 to image_size (image_size = 4 * 2^k, k >= 1)."""
  k = int(round(math.log2(image_size / 4))) if image_size >= 4 else -1
  if k < 1 or 4 * 2 ** k != image_size:
    raise ValueError(f"image size {image_size} must be 4 * 2^k with k >= 1 (8, 16, 32, 64, 128, 256)")
  return k


class Apply(nn.Module):
  """Calls a layer, spectrally normalised when `spectral_norm` (u vectors in collection 'spectral')."""
  layer: nn.Module
  spectral_norm: bool = False
  power_iterations: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    if not self.spectral_norm:
      return self.layer(x)
    return nn.SpectralNorm(self.layer, n_steps=self.power_iterations, collection_name=SPECTRAL)(
        x, update_stats=train)


# DCGAN's settings: momentum 0.9 (TF's decay), eps 1e-5.
BATCH_NORM_MOMENTUM = 0.9


def normalise(kind: str, x: jax.Array, train: bool, name: str,
              momentum: float = BATCH_NORM_MOMENTUM) -> jax.Array:
  if kind == "none":
    return x
  if kind == "batch":
    # Under a data-parallel jit the batch statistics are those of the global batch, so 1 and 8
    # devices compute the same thing.
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                        name=name)(x)
  if kind == "layer":
    return nn.LayerNorm(name=name)(x)
  if kind == "instance":
    return nn.GroupNorm(num_groups=None, group_size=1, name=name)(x)
  raise ValueError(f"unknown norm '{kind}'; choose from {', '.join(NORMS)}")


# The pairwise kernel sums of minibatch discrimination, with hand-written VJPs. Autodiff of
# sum_j exp(-sum_c |m_i - m_j|) keeps the [B, B, K, C] differences and reduces their cotangent
# twice (once for m_i, once for m_j); the VJPs below recompute the signs and reduce once, with the
# batch pair as the minor axes ([K, C, B, B]), which XLA:CPU vectorises: at the mode-collapse
# benchmark's size the layer's gradient is 1.2-1.7x faster, a gradient penalty's gradient of a
# gradient 1.4-2.3x (experiments/bench_minibatch_layer.py; BENCHMARKS.md).
# They are made of differentiable jax ops, so the gradient penalties' gradient-of-gradient goes
# through them; forward-mode (jax.jvp) is not defined for them.


def _kernel_major(m: jax.Array) -> jax.Array:
  return jnp.transpose(m, (1, 2, 0))  # [B, K, C] -> [K, C, B]


def _pairwise_signs(mt: jax.Array, rt: jax.Array) -> jax.Array:
  return jnp.sign(mt[:, :, :, None] - rt[:, :, None, :])  # [K, C, B_i, B_j]


@jax.custom_vjp
def _pairwise_closeness(mt: jax.Array, rt: jax.Array) -> jax.Array:
  """exp(-||m_i - r_j||_1) per kernel, [K, B_i, B_j], from kernel-major [K, C, B] projections.
  Its own VJP serves the gradient penalties: their second backward pass differentiates the kernel
  sums' VJPs below, which hold this as a residual."""
  return jnp.exp(-jnp.sum(jnp.abs(mt[:, :, :, None] - rt[:, :, None, :]), axis=1))


def _pairwise_closeness_fwd(mt, rt):
  e = _pairwise_closeness(mt, rt)
  return e, (mt, rt, e)


def _pairwise_closeness_bwd(residuals, g):
  mt, rt, e = residuals
  weighted = (g * e)[:, None] * _pairwise_signs(mt, rt)  # [K, C, B_i, B_j]
  return -jnp.sum(weighted, axis=-1), jnp.sum(weighted, axis=-2)


_pairwise_closeness.defvjp(_pairwise_closeness_fwd, _pairwise_closeness_bwd)


@jax.custom_vjp
def closeness_within_batch(m: jax.Array) -> jax.Array:
  """o[i, b] = sum_j exp(-||m[i, b] - m[j, b]||_1) over the batch, j = i included; m [B, K, C]."""
  return _closeness_within_fwd(m)[0]


def _closeness_within_fwd(m):
  mt = _kernel_major(m)
  e = _pairwise_closeness(mt, mt)
  return jnp.sum(e, axis=-1).T, (mt, e)


def _closeness_within_bwd(residuals, g):
  mt, e = residuals
  gt = g.T  # [K, B]
  # e is symmetric, so m_i moves o_i and every o_j through the same term: one weight g_i + g_j.
  w = (gt[:, :, None] + gt[:, None, :]) * e
  return (jnp.transpose(-jnp.sum(w[:, None] * _pairwise_signs(mt, mt), axis=-1), (2, 0, 1)),)


closeness_within_batch.defvjp(_closeness_within_fwd, _closeness_within_bwd)


@jax.custom_vjp
def closeness_to_reference(m: jax.Array, r: jax.Array) -> jax.Array:
  """o[i, b] = 1 + sum_{j != i} exp(-||m[i, b] - r[j, b]||_1); m, r [B, K, C], row i of r the same
  example as row i of m (so j = i is the constant exp(0) = 1)."""
  return _closeness_to_reference_fwd(m, r)[0]


def _closeness_to_reference_fwd(m, r):
  mt, rt = _kernel_major(m), _kernel_major(r)
  others = 1.0 - jnp.eye(m.shape[0], dtype=m.dtype)
  e = _pairwise_closeness(mt, rt) * others
  return 1.0 + jnp.sum(e, axis=-1).T, (mt, rt, e)


def _closeness_to_reference_bwd(residuals, g):
  mt, rt, e = residuals
  dmt, drt = _pairwise_closeness_bwd((mt, rt, e), jnp.broadcast_to(g.T[:, :, None], e.shape))
  return jnp.transpose(dmt, (2, 0, 1)), jnp.transpose(drt, (2, 0, 1))


closeness_to_reference.defvjp(_closeness_to_reference_fwd, _closeness_to_reference_bwd)


class MinibatchDiscrimination(nn.Module):
  """Salimans et al. 2016, sec. 3.2: features f [B, A] -> M = f T, [B, K, C]; for each kernel b,
  o_b(x_i) = sum_j exp(-||M_ib - M_jb||_1) over the batch; returns [f, o] ([B, A + K]). The sum
  includes j = i (a constant exp(0) = 1), as in the paper.

  reference: features [B, A] of the batch that row i is compared with, row i of reference being
  the same example as row i of f: o_b(x_i) = 1 + sum_{j != i} exp(-||M_ib - R_jb||_1), which equals
  the plain call's value at reference = f. A gradient penalty differentiates f alone, so its
  gradient is the per-example d o(x_i) / d x_i with the other examples held where they are (the
  plain call's gradient of the summed outputs would also count how x_i moves every other o(x_j))."""
  num_kernels: int = 50
  kernel_dim: int = 5
  # T's initial std. exp(-L1) only says something where the L1 distances are of order 1: with
  # features of std s and A inputs, the projected coordinates have std ~ init_std sqrt(A) s.
  init_std: float = 0.1

  @nn.compact
  def __call__(self, f: jax.Array, reference: jax.Array | None = None) -> jax.Array:
    t = self.param("T", nn.initializers.normal(self.init_std), (f.shape[-1], self.num_kernels * self.kernel_dim))
    project = lambda v: (v @ t).reshape(v.shape[0], self.num_kernels, self.kernel_dim)
    m = project(f)
    if reference is None:
      return jnp.concatenate([f, closeness_within_batch(m)], axis=-1)
    if reference.shape != f.shape:
      raise ValueError(f"minibatch discrimination: reference {reference.shape} must have the "
                       f"features' shape {f.shape} (row i the same example as row i)")
    return jnp.concatenate([f, closeness_to_reference(m, project(reference))], axis=-1)


def minibatch_features(h: jax.Array, reference_rows: int, kernels: int, kernel_dim: int,
                       init_std: float = 0.1, name: str = "minibatch") -> jax.Array:
  """Minibatch discrimination on features h. reference_rows > 0: h holds the evaluated examples
  then as many reference examples (the discriminator ran both through its layers in one call), and
  the features of the first half are returned, compared with the second (see
  MinibatchDiscrimination)."""
  mbd = MinibatchDiscrimination(kernels, kernel_dim, init_std, name=name)
  if not reference_rows:
    return mbd(h)
  return mbd(h[:-reference_rows], reference=h[-reference_rows:])


def minibatch_stddev(x: jax.Array, group_size: int = 4) -> jax.Array:
  """Karras et al. 2018 (ProGAN), sec. 3: the standard deviation of every feature over groups of
  `group_size` consecutive examples, averaged to one value per group, appended as a feature map
  (images [B, H, W, C] -> [B, H, W, C + 1]; vectors [B, A] -> [B, A + 1])."""
  b = x.shape[0]
  g = min(group_size, b)
  if b % g:
    raise ValueError(f"minibatch stddev: batch {b} is not a multiple of the group size {g}")
  y = x.reshape((g, b // g) + x.shape[1:]).astype(jnp.float32)
  std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)                      # [B/g, ...]
  s = jnp.mean(std, axis=tuple(range(1, std.ndim)))              # [B/g]
  s = jnp.tile(s, g)                                             # example i gets group i % (B/g)
  s = jnp.broadcast_to(s.reshape((b,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
  return jnp.concatenate([x, s.astype(x.dtype)], axis=-1)


def _reference_rows(x: jax.Array, reference: jax.Array | None, minibatch_kernels: int) -> int:
  """How many reference rows a discriminator runs beside x: reference's, when it has minibatch
  discrimination to compare them in (0 otherwise: the reference is not needed)."""
  if reference is None or not minibatch_kernels:
    return 0
  if reference.shape != x.shape:
    raise ValueError(f"discriminator: reference {reference.shape} must have the input's shape {x.shape}")
  return x.shape[0]


# -- 2D data: PacGAN's networks ----------------------------------------------------------------------

def dense_layer(features: int, init_std: float, name: str, init_transform=None) -> nn.Dense:
  """A Dense layer with flax's default initialisation (LeCun normal kernel, zero bias) when
  init_std is 0, else kernel ~ N(0, init_std^2) and zero bias (PacGAN's and DCGAN's 0.02).
  init_transform (e.g. packed_block_init(...)), if given, maps the kernel initialiser to the one used."""
  init = nn.initializers.normal(init_std) if init_std > 0 else nn.initializers.lecun_normal()
  if init_transform is not None:
    init = init_transform(init)
  return nn.Dense(features, kernel_init=init, name=name)


PACK_INITS = ("dense", "block")


def packed_block_init(pack: int, pieces: int):
  """The first layer of a discriminator on PacGAN-packed inputs ([B/m, m C], example j in columns
  j C .. (j+1) C), initialised block-diagonally: unit u (all of its maxout pieces) starts
  connected to packed example u mod m alone, its weights scaled by sqrt(m) so that its
  pre-activation variance is the dense layer's. Training is free to mix the examples from there.

  Why: a dense unit sees w . x, a sum of m independent per-example projections, whose distribution
  under the data and under a generator that matches the data's low moments differ less the larger m
  (the sum smooths the spikes of each example's projection). On the 5x5 grid a dense maxout
  discriminator did not learn to tell 3 or 4 packed grid points from a moment-matched uniform spread
  in 10000 steps, a block-initialised one did (BENCHMARKS.md, GANs)."""
  def wrap(base):
    def init(key, shape, dtype=jnp.float32):
      kernel = base(key, shape, dtype)
      fan_in, units = shape
      if fan_in % pack:
        raise ValueError(f"packed_block_init: {fan_in} inputs do not split into {pack} examples")
      example_of_input = jnp.arange(fan_in) // (fan_in // pack)
      example_of_unit = (jnp.arange(units) // pieces) % pack
      mask = example_of_input[:, None] == example_of_unit[None, :]
      return jnp.where(mask, kernel * jnp.sqrt(pack).astype(dtype), jnp.zeros((), dtype))
    return init
  return wrap


class MLPGenerator(nn.Module):
  """z [B, latent] -> x [B, out_dim]: `depth` hidden layers of Dense-BatchNorm-ReLU (PacGAN's 2D
  generator: 4 x 400), then a linear output."""
  out_dim: int = 2
  hidden: int = 400
  depth: int = 4
  batch_norm: bool = True
  bn_momentum: float = BATCH_NORM_MOMENTUM
  init_std: float = 0.0  # see dense_layer

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    h = z
    for i in range(self.depth):
      h = dense_layer(self.hidden, self.init_std, f"dense{i}")(h)
      if self.batch_norm:
        h = normalise("batch", h, train, f"bn{i}", self.bn_momentum)
      h = nn.relu(h)
    return dense_layer(self.out_dim, self.init_std, "dense_out")(h)


class Maxout(nn.Module):
  """A linear layer of units x pieces outputs, the max over each unit's pieces (Goodfellow et al. 2013)."""
  units: int
  pieces: int
  spectral_norm: bool = False
  init_std: float = 0.0  # see dense_layer
  init_transform: Callable | None = None  # see dense_layer

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = Apply(dense_layer(self.units * self.pieces, self.init_std, "linear", self.init_transform),
              self.spectral_norm)(x, train)
    return jnp.max(y.reshape(x.shape[:-1] + (self.units, self.pieces)), axis=-1)


class MLPDiscriminator(nn.Module):
  """x [B, in] -> logits [B]: `depth` maxout layers (PacGAN's 2D discriminator: 3 layers of 200
  units x 5 pieces), optionally minibatch discrimination before the output layer."""
  hidden: int = 200
  pieces: int = 5
  depth: int = 3
  spectral_norm: bool = False
  minibatch_kernels: int = 0  # > 0: minibatch discrimination with this many kernels
  minibatch_kernel_dim: int = 5
  minibatch_init_std: float = 0.1  # see MinibatchDiscrimination.init_std
  init_std: float = 0.0  # see dense_layer
  pack: int = 1  # PacGAN's m: the input is m examples concatenated
  pack_init: str = "dense"  # the first layer's init on packed input: dense | block (packed_block_init)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, reference: jax.Array | None = None) -> jax.Array:
    """reference (with minibatch discrimination; ignored without): the batch the minibatch
    features compare x with, for a per-example gradient penalty (see MinibatchDiscrimination)."""
    if self.pack_init not in PACK_INITS:
      raise ValueError(f"MLPDiscriminator: pack_init must be one of {PACK_INITS}, not {self.pack_init!r}")
    ref_rows = _reference_rows(x, reference, self.minibatch_kernels)
    h = jnp.concatenate([x, reference]) if ref_rows else x
    block = self.pack_init == "block" and self.pack > 1
    for i in range(self.depth):
      transform = packed_block_init(self.pack, self.pieces) if block and i == 0 else None
      h = Maxout(self.hidden, self.pieces, self.spectral_norm, self.init_std, transform,
                 name=f"maxout{i}")(h, train)
    if self.minibatch_kernels:
      h = minibatch_features(h, ref_rows, self.minibatch_kernels, self.minibatch_kernel_dim,
                             self.minibatch_init_std)
    return Apply(dense_layer(1, self.init_std, "dense_out"), self.spectral_norm)(h, train)[..., 0]


# -- images: DCGAN and PatchGAN ----------------------------------------------------------------------

class DCGANGenerator(nn.Module):
  """Radford et al. 2016: z projected to a 4x4 map of base_ch * 2^(k-1) channels, then k - 1
  transposed convolutions (4x4, stride 2) halving the channels while the resolution doubles, and a
  last one to the image's channels; BatchNorm + ReLU between, tanh out."""
  image_size: int = 32
  channels: int = 3
  base_ch: int = 64
  norm: str = "batch"
  conv_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    k = resolution_levels(self.image_size)
    ch = self.base_ch * 2 ** (k - 1)
    init = nn.initializers.normal(0.02)  # DCGAN: weights from N(0, 0.02)
    h = nn.Dense(4 * 4 * ch, kernel_init=init, dtype=self.dtype, name="project")(z)
    h = nn.relu(normalise(self.norm, h.reshape(z.shape[0], 4, 4, ch), train, "bn_project"))
    for i in range(k - 1):
      ch //= 2
      h = ConvTranspose2D(ch, 4, 2, impl=self.conv_impl, dtype=self.dtype, kernel_init=init,
                          name=f"up{i}")(h)
      h = nn.relu(normalise(self.norm, h, train, f"bn{i}"))
    h = ConvTranspose2D(self.channels, 4, 2, impl=self.conv_impl, dtype=self.dtype,
                        kernel_init=init, name="to_image")(h)
    return jnp.tanh(h.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Strided 4x4 convolutions halving the resolution down to 4x4 while channels double from
  base_ch, LeakyReLU(0.2), no pooling, the norm on every layer but the first, then one linear
  logit. Options: spectral normalisation of every layer (SNGAN), minibatch standard deviation or
  minibatch discrimination before the output."""
  image_size: int = 32
  base_ch: int = 64
  norm: str = "batch"
  spectral_norm: bool = False
  minibatch_std_group: int = 0   # > 0: append minibatch stddev over groups of this size
  minibatch_kernels: int = 0
  minibatch_kernel_dim: int = 5
  minibatch_init_std: float = 0.1  # see MinibatchDiscrimination.init_std
  conv_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, reference: jax.Array | None = None) -> jax.Array:
    """reference: as MLPDiscriminator's (used by minibatch discrimination only; the minibatch
    stddev keeps StyleGAN's convention and sees x's batch alone)."""
    k = resolution_levels(self.image_size)
    init = nn.initializers.normal(0.02)
    ref_rows = _reference_rows(x, reference, self.minibatch_kernels)
    h = (jnp.concatenate([x, reference]) if ref_rows else x).astype(self.dtype)
    ch = self.base_ch
    for i in range(k):
      conv = Conv2D(ch, kernel_size=4, stride=2, impl=self.conv_impl, dtype=self.dtype,
                    kernel_init=init, name=f"conv{i}")
      h = Apply(conv, self.spectral_norm)(h, train)
      if i > 0:
        h = normalise(self.norm, h, train, f"norm{i}")
      h = nn.leaky_relu(h, 0.2)
      ch *= 2
    if self.minibatch_std_group:  # each half its own groups, as in separate calls
      halves = (h[:-ref_rows], h[-ref_rows:]) if ref_rows else (h,)
      h = jnp.concatenate([minibatch_stddev(part, self.minibatch_std_group) for part in halves])
    h = h.reshape(h.shape[0], -1).astype(jnp.float32)
    if self.minibatch_kernels:
      h = minibatch_features(h, ref_rows, self.minibatch_kernels, self.minibatch_kernel_dim,
                             self.minibatch_init_std)
    return Apply(nn.Dense(1, kernel_init=init, name="logit"), self.spectral_norm)(h, train)[..., 0]


class PatchGANDiscriminator(nn.Module):
  """Isola et al. 2017 (pix2pix): `num_layers` 4x4 stride-2 convolutions (channels doubling from
  base_ch, capped at 8x), one stride-1 4x4 convolution, and a 1-channel stride-1 convolution: one
  logit per overlapping patch ([B, H / 2^n, W / 2^n]); the loss averages them. num_layers=3 is the
  70x70 PatchGAN."""
  base_ch: int = 64
  num_layers: int = 3
  norm: str = "batch"
  spectral_norm: bool = False
  conv_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    init = nn.initializers.normal(0.02)
    h = x.astype(self.dtype)
    for i in range(self.num_layers + 1):
      ch = self.base_ch * min(2 ** i, 8)
      conv = Conv2D(ch, kernel_size=4, stride=2 if i < self.num_layers else 1, impl=self.conv_impl,
                    dtype=self.dtype, kernel_init=init, name=f"conv{i}")
      h = Apply(conv, self.spectral_norm)(h, train)
      if i > 0:
        h = normalise(self.norm, h, train, f"norm{i}")
      h = nn.leaky_relu(h, 0.2)
    out = Conv2D(1, kernel_size=4, stride=1, impl=self.conv_impl, kernel_init=init, name="logits")
    return Apply(out, self.spectral_norm)(h, train)[..., 0].astype(jnp.float32)
