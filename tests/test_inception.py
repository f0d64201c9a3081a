"""FID Inception-v3: architecture facts, input conventions and the weights loader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.errors import CheckpointError
from jaxgen.metrics import inception as inc


def test_parameter_count_matches_torchvision_inception_v3():
  # torchvision documents 27,161,264 parameters for inception_v3 (1000 classes, with the auxiliary
  # classifier). The FID graph has no auxiliary head (conv 768->128 1x1 + BN, conv 128->768 5x5 + BN,
  # fc 768->1000) and 1008 classes instead of 1000.
  aux = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
  expected = 27_161_264 - aux + 8 * (2048 + 1)
  params = inc.variable_shapes()["params"]
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == expected


def test_feature_map_shapes_follow_the_paper():
  # Szegedy et al. 2015, Table 1: 35x35x288 -> 17x17x768 -> 8x8x2048, then 2048-d pool.
  model = inc.FIDInceptionV3(return_maps=True)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((2, 299, 299, 3)))[0])
  shapes = {k: v.shape for k, v in out.items()}
  assert shapes["stem"] == (2, 35, 35, 192)
  assert shapes["mixed_5d"] == (2, 35, 35, 288)
  assert shapes["mixed_6e"] == (2, 17, 17, 768)
  assert shapes["mixed_7c"] == (2, 8, 8, 2048)
  assert shapes["pool_3"] == (2, 2048) and shapes["logits"] == (2, 1008)


def test_tf1_legacy_resize_by_hand():
  # 2 -> 4 pixels: sources 0, 0.5, 1, 1.5 (the last clamps to pixel 1).
  np.testing.assert_allclose(inc.resize_matrix(2, 4, "tf1"),
                             [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  # half-pixel: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25.
  np.testing.assert_allclose(inc.resize_matrix(2, 4, "half_pixel"),
                             [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
  # rows sum to one for the real sizes (8 -> 299, 32 -> 299)
  for n in (8, 32):
    np.testing.assert_allclose(inc.resize_matrix(n, 299).sum(1), 1.0)


def test_input_range_and_quantisation():
  # [-1, 1] -> 8-bit 0..255 -> (x - 128) / 128, as the TF graph's Sub/Mul: -1 -> -1, 1 -> 127/128.
  x = jnp.array([-1.0, 1.0, 0.0, 0.001]).reshape(1, 2, 2, 1)
  out = inc.to_inception_input(x)
  assert out.shape == (1, 299, 299, 3)
  assert float(out[0, 0, 0, 0]) == -1.0
  assert float(out[0, 0, 298, 0]) == pytest.approx(127 / 128)  # tf1 resize keeps the corners
  assert float(out[0, 298, 0, 0]) == pytest.approx((128 - 128) / 128)  # 0.0 -> 127.5 -> 128
  np.testing.assert_array_equal(out[..., 0], out[..., 2])  # grey -> identical RGB channels


def test_avg_pool_excludes_padding():
  x = jnp.ones((1, 3, 3, 1))
  np.testing.assert_allclose(inc.avg_pool_exclude_padding(x), 1.0)  # a zero-padded mean gives 4/9 at corners


@pytest.fixture(scope="module")
def random_variables():
  # Random weights in the module's layout (a real file cannot be downloaded here).
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: (1.0 + 0.05 * rng.standard_normal(s.shape)).astype(np.float32),
                      inc.variable_shapes())


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weights_roundtrip_through_pytorch_fid_keys(tmp_path, random_variables, suffix):
  path = tmp_path / f"w{suffix}"
  inc.export_weights(random_variables, path)
  keys = set(inc.read_tensor_file(path))
  assert "Mixed_5b.branch1x1.conv.weight" in keys and "Mixed_7c.branch_pool.bn.running_var" in keys
  assert inc.read_tensor_file(path)["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)  # OIHW
  assert inc.read_tensor_file(path)["fc.weight"].shape == (1008, 2048)
  loaded = inc.load_weights(path)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(random_variables)):
    np.testing.assert_array_equal(a, b)


def test_damaged_and_mismatched_weights_are_named(tmp_path, random_variables):
  path = tmp_path / "w.npz"
  inc.export_weights(random_variables, path)
  arrays = dict(inc.read_tensor_file(path))

  damaged = tmp_path / "damaged.safetensors"
  damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
  with pytest.raises(CheckpointError, match="damaged"):
    inc.load_weights(damaged)
  with pytest.raises(CheckpointError, match="does not exist"):
    inc.load_weights(tmp_path / "nope.npz")
  pth = tmp_path / "w.pth"
  pth.write_bytes(b"x")
  with pytest.raises(CheckpointError, match="pickled"):
    inc.load_weights(pth)

  missing = dict(arrays)
  del missing["Mixed_6b.branch7x7_2.conv.weight"]
  np.savez(tmp_path / "missing.npz", **missing)
  with pytest.raises(CheckpointError, match="missing 'Mixed_6b.branch7x7_2.conv.weight'"):
    inc.load_weights(tmp_path / "missing.npz")

  wrong = dict(arrays, **{"fc.weight": np.zeros((1000, 2048), np.float32),
                          "fc.bias": np.zeros((1000,), np.float32)})
  np.savez(tmp_path / "wrong.npz", **wrong)
  with pytest.raises(CheckpointError, match=r"'fc.weight' has shape \(1000, 2048\), expected \(1008, 2048\)"):
    inc.load_weights(tmp_path / "wrong.npz")

  extra = dict(arrays, **{"AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)})
  np.savez(tmp_path / "extra.npz", **extra)
  with pytest.raises(CheckpointError, match="unexpected 'AuxLogits.fc.weight'"):
    inc.load_weights(tmp_path / "extra.npz")


def test_forward_on_the_smallest_input_runs_every_block():
  # 75x75 is the smallest input the architecture accepts (the stem and both reductions use VALID
  # convolutions); a forward there runs every block at low cost.
  rng = np.random.default_rng(1)

  def init(path, s):  # He-normal kernels; BN statistics mean 0, var 1; scale 1, bias 0
    name = path[-1].key
    if name == "kernel":
      return (rng.standard_normal(s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))).astype(np.float32)
    return np.ones(s.shape, np.float32) if name in ("scale", "var") else np.zeros(s.shape, np.float32)

  variables = jax.tree_util.tree_map_with_path(init, inc.variable_shapes())
  x = rng.uniform(-1, 1, (1, 75, 75, 3)).astype(np.float32)
  out = jax.jit(inc.FIDInceptionV3().apply)(variables, x)
  assert out["pool_3"].shape == (1, 2048) and out["logits"].shape == (1, 1008)
  assert bool(jnp.all(jnp.isfinite(out["pool_3"]))) and float(jnp.std(out["pool_3"])) > 0
