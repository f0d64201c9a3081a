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


def _random_variables(model, *args):
  """Random values in the shapes `model.init` would give, without compiling the init.

  The init's compile (a threefry draw and a truncated normal per parameter) costs more than the
  forward's on 2 CPU cores; these tests need values of the right shapes, not the initial ones, and
  random ones everywhere (the DDPM output conv starts at zero) make the time dependence visible.
  """
  shapes = jax.eval_shape(lambda k: model.init(k, *args), jax.random.key(0))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(0.2 * rng.standard_normal(s.shape), s.dtype), shapes)


def test_unet_shapes_remat_and_time_dependence():
  # Everything under jit: eager flax dispatches (and compiles) op by op, which is far slower.
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  t = jnp.array([3, 40])
  # One resolution with attention: remat wraps the res blocks, which this has; fewer levels keep
  # the two gradient compiles short.
  model = _tiny_unet(ch_mult=(1,), attn_resolutions=(8,))
  variables = _random_variables(model, x, t, False)
  apply = jax.jit(lambda v, tt: model.apply(v, x, tt, False))
  assert apply(variables, t).shape == x.shape
  y0 = apply(variables, jnp.array([3, 3]))
  y1 = apply(variables, jnp.array([900, 900]))
  assert not np.allclose(y0, y1)
  loss = lambda m: lambda v: jnp.sum(m.apply(v, x, t, False) ** 2)
  g = jax.jit(jax.grad(loss(model)))(variables)
  g_remat = jax.jit(jax.grad(loss(_tiny_unet(ch_mult=(1,), attn_resolutions=(8,), remat=True))))(
      variables)
  # atol 1e-5 on O(1) gradients: remat recomputes the forward in another fusion order (float
  # differences up to 3e-6 seen); a wrong rematerialisation differs by orders more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g, g_remat)


def test_unet_bfloat16_activations_keep_float32_params():
  x = jnp.ones((1, 8, 8, 1))
  t = jnp.zeros(1, jnp.int32)
  model = _tiny_unet(dtype="bfloat16")
  variables = _random_variables(model, x, t, False)
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


def _param_count(config_file):
  from jaxgen.config import load_config_file
  from jaxgen.method import build_method
  method = build_method(load_config_file(config_file))
  shapes = jax.eval_shape(method.init, jax.random.key(0))  # no computation at full size
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


def test_paper_unets_count_the_papers_parameters():
  """Ho et al. (2020): 35.7M parameters for CIFAR-10, 114M for 256x256 LSUN."""
  import pathlib
  root = pathlib.Path(__file__).resolve().parents[1] / "experiments"
  assert _param_count(root / "ddpm_cifar10.py") == 35_746_307
  assert _param_count(root / "ddpm_lsun256.py") == 113_673_219


def test_adm_options_and_class_conditioning():
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  t = jnp.array([3, 40, 7])
  model = _tiny_unet(ch_mult=(1, 2), resblock_updown=True, scale_shift_norm=True,
                     num_head_channels=4, num_classes=5, out_ch=2)
  labels = jnp.array([0, 4, 5])  # 5 is the null class
  variables = _random_variables(model, x, t, False, labels)
  params = variables["params"]
  # BigGAN-style resampling blocks replace the conv down/upsamplers; the norm takes scale and shift.
  assert "down0_downsample" in params and "Conv2D_0" in params["down0_downsample"]
  assert params["down0_res0"]["Dense_0"]["kernel"].shape[-1] == 2 * 8
  assert params["class_embed"]["embedding"].shape == (6, 32)
  apply = jax.jit(lambda v, lb: model.apply(v, x, t, False, lb))
  y = apply(variables, labels)
  assert y.shape == (3, 8, 8, 2)
  y_other = apply(variables, jnp.array([1, 4, 5]))
  assert not np.allclose(y[0], y_other[0]) and np.allclose(y[1:], y_other[1:], atol=1e-6)
  with pytest.raises(ValueError, match="needs labels"):
    model.init(jax.random.key(1), x, t, False)


def test_unet_head_errors():
  with pytest.raises(ValueError, match="num_head_channels=12"):
    check_unet_config(8, 8, (1, 2), (4,), 4, num_head_channels=12)
