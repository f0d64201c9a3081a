import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn.layers import Conv2D
from jaxgen.nn.unet import UNet, check_unet_config


@pytest.mark.parametrize("stride, size", [(1, 6), (2, 8), (2, 7)])
def test_im2col_conv_equals_xla_conv_forward_and_backward(stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  ref = Conv2D(4, stride=stride, impl="xla")
  params = ref.init(jax.random.key(1), x)
  # The parameter layout is nn.Conv's, so checkpoints are interchangeable.
  flax_conv = nn.Conv(4, (3, 3), strides=stride, padding="SAME")
  np.testing.assert_allclose(flax_conv.apply(params, x), ref.apply(params, x), atol=1e-5)
  f = lambda impl: lambda p, x: jnp.sum(jnp.sin(Conv2D(4, stride=stride, impl=impl).apply(p, x)))
  for impl in ("im2col",):
    np.testing.assert_allclose(Conv2D(4, stride=stride, impl=impl).apply(params, x), ref.apply(params, x), atol=1e-5)
    g_ref = jax.grad(f("xla"), argnums=(0, 1))(params, x)
    g = jax.grad(f(impl), argnums=(0, 1))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), g, g_ref)


def _tiny_unet(**kw):
  return UNet(**{**dict(ch=8, out_ch=1, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                        dropout=0.0, num_groups=4), **kw})


def test_unet_shapes_remat_and_time_dependence():
  # Everything under jit: eager flax dispatches (and compiles) op by op, which is far slower.
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  t = jnp.array([3, 40])
  model = _tiny_unet()
  variables = jax.jit(lambda k: model.init(k, x, t, False))(jax.random.key(1))
  apply = jax.jit(lambda v, tt: model.apply(v, x, tt, False))
  assert apply(variables, t).shape == x.shape
  # The output conv starts near zero (DDPM init), so perturb params to test time dependence.
  variables = jax.jit(lambda v: jax.tree.map(lambda p: p + 0.05, v))(variables)
  y0 = apply(variables, jnp.array([3, 3]))
  y1 = apply(variables, jnp.array([900, 900]))
  assert not np.allclose(y0, y1)
  loss = lambda m: lambda v: jnp.sum(m.apply(v, x, t, False) ** 2)
  g = jax.jit(jax.grad(loss(model)))(variables)
  g_remat = jax.jit(jax.grad(loss(_tiny_unet(remat=True))))(variables)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g, g_remat)


def test_unet_bfloat16_activations_keep_float32_params():
  x = jnp.ones((1, 8, 8, 1))
  t = jnp.zeros(1, jnp.int32)
  model = _tiny_unet(dtype="bfloat16")
  variables = jax.jit(lambda k: model.init(k, x, t, False))(jax.random.key(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert jax.jit(lambda v: model.apply(v, x, t, False))(variables).dtype == jnp.float32


@pytest.mark.parametrize("args, fragment", [
    ((10, 8, (1, 2, 2), (), 4), "cannot be halved"),
    ((16, 8, (1, 2), (32,), 4), "never occur"),
    ((16, 6, (1, 2), (), 4), "not divisible by num_groups"),
])
def test_unet_config_errors(args, fragment):
  with pytest.raises(ValueError, match=fragment):
    check_unet_config(*args)
