"""GANs: objectives and penalties against hand-computed values, the stabilisers' layers against
their definitions, the two-player step against an independent implementation (plain and unrolled),
the networks' shapes and StyleGAN's growing and truncation, and whole runs (8 devices = 1 device,
resume = uninterrupted, sampling and interpolation through the CLI)."""

import dataclasses
import json
import math
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import subprocess_env
from jaxgen.gan import losses
from jaxgen.gan.method import pack_examples
from jaxgen.gan.step import Players, Settings, build_two_player_update
from jaxgen.nn import gan as gan_nets, stylegan

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_GAN = str(REPO / "tests" / "configs" / "tiny_gan.py")

sp = lambda v: math.log1p(math.exp(v))  # softplus


@pytest.mark.parametrize("kind, d_value, g_value", [
    # real logits (2, -1), fake logits (-1, 0.5)
    ("minimax", (sp(-2) + sp(1)) / 2 + (sp(-1) + sp(0.5)) / 2, -(sp(-1) + sp(0.5)) / 2),
    ("non_saturating", (sp(-2) + sp(1)) / 2 + (sp(-1) + sp(0.5)) / 2, (sp(1) + sp(-0.5)) / 2),
    ("least_squares", 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (1 + 0.25) / 2,
     0.5 * ((-1 - 1) ** 2 + (0.5 - 1) ** 2) / 2),
    ("hinge", (0 + 2) / 2 + (0 + 1.5) / 2, -(-1 + 0.5) / 2),
    ("wasserstein", (-1 + 0.5) / 2 - (2 - 1) / 2, -(-1 + 0.5) / 2),
])
def test_objectives_by_hand(kind, d_value, g_value):
  real, fake = jnp.array([2.0, -1.0]), jnp.array([-1.0, 0.5])
  assert float(losses.discriminator_loss(kind, real, fake)) == pytest.approx(d_value, rel=1e-6)
  assert float(losses.generator_loss(kind, fake)) == pytest.approx(g_value, rel=1e-6)


def test_minimax_losses_are_the_cross_entropies_of_sigmoid_outputs():
  real, fake = jnp.array([0.3, 1.7, -0.4]), jnp.array([-2.0, 0.1, 0.9])
  d_real, d_fake = jax.nn.sigmoid(real), jax.nn.sigmoid(fake)
  d = -jnp.mean(jnp.log(d_real)) - jnp.mean(jnp.log(1 - d_fake))
  np.testing.assert_allclose(losses.discriminator_loss("minimax", real, fake), d, rtol=1e-5)
  np.testing.assert_allclose(losses.generator_loss("minimax", fake), jnp.mean(jnp.log(1 - d_fake)), rtol=1e-5)
  np.testing.assert_allclose(losses.generator_loss("non_saturating", fake), -jnp.mean(jnp.log(d_fake)), rtol=1e-5)
  # Accuracy: real 0.3, 1.7 right, -0.4 wrong; fake -2.0 right, 0.1 and 0.9 wrong.
  assert float(losses.discriminator_accuracy("minimax", real, fake)) == pytest.approx(0.5 * (2 / 3 + 1 / 3))


def test_gradient_penalty_and_r1_on_a_linear_critic():
  w = jnp.array([[0.6], [-1.2], [2.0]])  # ||w|| = sqrt(0.36 + 1.44 + 4) = sqrt(5.8)
  critic = lambda x: (x @ w)[:, 0]
  key = jax.random.PRNGKey(0)
  real = jax.random.normal(key, (16, 3))
  fake = jax.random.normal(jax.random.fold_in(key, 1), (16, 3)) * 3
  # The gradient of a linear critic is w at every interpolate: the penalty is (||w|| - 1)^2.
  assert float(losses.gradient_penalty(critic, real, fake, key)) == pytest.approx((math.sqrt(5.8) - 1) ** 2, rel=1e-5)
  assert float(losses.r1_penalty(critic, real)) == pytest.approx(5.8, rel=1e-5)
  # A 1-Lipschitz linear critic pays nothing; the penalty on images flattens each example.
  unit = lambda x: jnp.sum(x, axis=(1, 2, 3)) / math.sqrt(2 * 2 * 3)
  images = jax.random.normal(key, (4, 2, 2, 3))
  assert float(losses.gradient_penalty(unit, images, -images, key)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("layer", [nn.Dense(7), nn.Conv(5, (3, 3))])
def test_spectral_norm_bounds_the_largest_singular_value_after_a_few_iterations(layer):
  x = jnp.ones((2, 6, 6, 4)) if isinstance(layer, nn.Conv) else jnp.ones((2, 12))
  module = gan_nets.Apply(layer, spectral_norm=True)
  variables = module.init(jax.random.PRNGKey(0), x, False)
  kernel = np.asarray(variables["params"]["layer"]["kernel"]) * 3.0  # a weight with sigma far from 1
  variables = {"params": {"layer": dict(variables["params"]["layer"], kernel=jnp.asarray(kernel))},
               gan_nets.SPECTRAL: variables[gan_nets.SPECTRAL]}
  matrix = kernel.reshape(-1, kernel.shape[-1])
  true_sigma = np.linalg.svd(matrix, compute_uv=False)[0]
  assert true_sigma > 1.5
  for _ in range(20):  # the power iteration advances one step per training call
    _, updates = module.apply(variables, x, True, mutable=[gan_nets.SPECTRAL])
    variables = dict(variables, **updates)
  sigma = float(jax.tree.leaves({k: v for k, v in jax.tree_util.tree_flatten_with_path(
      variables[gan_nets.SPECTRAL])[0] if "sigma" in jax.tree_util.keystr(k)})[0])
  assert sigma == pytest.approx(true_sigma, rel=1e-3)
  # The normalised weight acts with largest singular value 1: probe the layer's linear part.
  bias = np.asarray(variables["params"]["layer"]["bias"])
  if isinstance(layer, nn.Dense):
    probe = jnp.eye(12)
    effective = np.asarray(module.apply(variables, probe, False)) - bias
  else:  # a 1x1 input sees the kernel's centre tap only; compare the full matrix via sigma instead
    effective = matrix / sigma
  assert np.linalg.svd(effective, compute_uv=False)[0] == pytest.approx(1.0, abs=2e-3)


def test_minibatch_stddev_and_discrimination_by_hand():
  x = jnp.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0], [3.0, 4.0]])
  out = gan_nets.minibatch_stddev(x, group_size=2)
  # Groups are (rows 0, 2) and (rows 1, 3): stds (0.5, 1.0) -> mean 0.75; (0.5, 1.0) -> 0.75.
  np.testing.assert_allclose(out[:, 2], [0.75, 0.75, 0.75, 0.75], rtol=1e-4)
  y = jnp.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 6.0]])
  out = gan_nets.minibatch_stddev(y, group_size=2)
  # (rows 0, 2): stds (1, 0) -> 0.5; (rows 1, 3): stds (0, 3) -> 1.5.
  np.testing.assert_allclose(out[:, 2], [0.5, 1.5, 0.5, 1.5], atol=2e-4)
  mbd = gan_nets.MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
  f = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  params = mbd.init(jax.random.PRNGKey(1), f)
  o = np.asarray(mbd.apply(params, f))
  m = np.asarray(f @ params["params"]["T"]).reshape(5, 3, 2)
  expected = np.exp(-np.abs(m[:, None] - m[None]).sum(-1)).sum(1)
  np.testing.assert_allclose(o[:, 4:], expected, rtol=1e-5)
  np.testing.assert_allclose(o[:, :4], f)
  # Identical examples: every term is exp(0) = 1, so each feature is the batch size.
  same = mbd.apply(params, jnp.ones((6, 4)))
  np.testing.assert_allclose(same[:, 4:], 6.0)


def test_minibatch_kernel_sums_hand_written_gradients_match_autodiff():
  """The kernel sums' custom VJPs equal autodiff of the written-out formula, to first order and
  through a gradient penalty's gradient of a gradient (with respect to the projection, as the
  discriminator's parameters are), for the within-batch sums and those against a reference."""
  def within_direct(m):
    return jnp.sum(jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None, :]), axis=-1)), axis=1)

  def against_direct(m, r):
    e = jnp.exp(-jnp.sum(jnp.abs(m[:, None] - r[None, :]), axis=-1))
    return 1.0 + jnp.sum((1.0 - jnp.eye(m.shape[0]))[:, :, None] * e, axis=1)

  b, a, k, c = 6, 4, 3, 2
  f = jax.random.normal(jax.random.PRNGKey(0), (b, a))
  t = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (a, k * c))
  weights = jax.random.normal(jax.random.PRNGKey(2), (b, k))
  m = (f @ t).reshape(b, k, c)
  np.testing.assert_allclose(gan_nets.closeness_within_batch(m), within_direct(m), rtol=1e-6)
  np.testing.assert_allclose(gan_nets.closeness_to_reference(m, m), within_direct(m), rtol=1e-6)
  cases = ((lambda m: gan_nets.closeness_within_batch(m), within_direct),
           (lambda m: gan_nets.closeness_to_reference(m, m), lambda m: against_direct(m, m)),
           (lambda m: gan_nets.closeness_to_reference(m, jnp.roll(m, 1, 0) ** 2),
            lambda m: against_direct(m, jnp.roll(m, 1, 0) ** 2)))

  def loss(kernel_sums, t, x):
    return jnp.sum(weights * kernel_sums((x @ t).reshape(b, k, c)))

  def penalty(kernel_sums, t):  # R1-like: ||d loss / d x||^2, differentiated with respect to t
    return jnp.sum(jax.grad(loss, argnums=2)(kernel_sums, t, f) ** 2)

  @jax.jit  # one program for every gradient: 4.4 s, op by op 11.2 s
  def gradients():
    return [[(jax.grad(loss, argnums=(1, 2))(ks, t, f), jax.grad(penalty, argnums=1)(ks, t)) for ks in case]
            for case in cases]

  for got, want in gradients():
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      assert float(jnp.max(jnp.abs(w))) > 1e-3
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_minibatch_discrimination_kernel_scale_is_configurable():
  """model.minibatch_init_std reaches T through the MLP discriminator: the kernel's sample std is
  the configured one (8 x 250 = 2000 draws: within 5%), and the default stays 0.1."""
  x = jnp.ones((4, 2))
  for std in (0.1, 0.02):
    d = gan_nets.MLPDiscriminator(hidden=8, pieces=2, depth=1, minibatch_kernels=50,
                                  minibatch_kernel_dim=5, minibatch_init_std=std, init_std=0.02)
    t = d.init(jax.random.PRNGKey(0), x)["params"]["minibatch"]["T"]
    assert t.shape == (8, 250)
    np.testing.assert_allclose(float(jnp.std(t)), std, rtol=0.05)
  assert gan_nets.MLPDiscriminator().minibatch_init_std == 0.1


def _own_example_gradients(logits_of, x):
  """d logits_of(x)_i / d x_i with every other row of x held fixed, one example at a time (the
  independent truth for the per-example penalties through batch-coupled features)."""
  def one(i):
    return jax.grad(lambda v: logits_of(x.at[i].set(v))[i])(x[i])
  return jax.vmap(one)(jnp.arange(x.shape[0]))


def test_minibatch_discrimination_against_a_reference_is_per_example():
  mbd = gan_nets.MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
  f = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  params = mbd.init(jax.random.PRNGKey(1), f)
  plain = lambda v: mbd.apply(params, v)
  # At reference = f the value is the plain call's.
  np.testing.assert_allclose(mbd.apply(params, f, reference=f), plain(f), rtol=1e-6)
  # Its gradient with respect to f alone is, row by row, the plain feature's gradient with the
  # other rows held fixed; the plain call's summed gradient is not (it adds the cross terms).
  for b in range(3):
    own = _own_example_gradients(lambda v: plain(v)[:, 4 + b], f)
    via_reference = jax.grad(lambda v: jnp.sum(mbd.apply(params, v, reference=f)[:, 4 + b]))(f)
    np.testing.assert_allclose(via_reference, own, rtol=1e-5, atol=1e-6)
    summed = jax.grad(lambda v: jnp.sum(plain(v)[:, 4 + b]))(f)
    assert float(jnp.max(jnp.abs(summed - own))) > 1e-2


def test_r1_and_gradient_penalty_through_minibatch_discrimination_are_per_example():
  """R1 and WGAN-GP with a reference-taking critic equal the mean of ||d D(x_i) / d x_i||^2 (and
  (||.|| - 1)^2) computed one example at a time, on both discriminators with minibatch features;
  the reference changes no logit. The one-argument (summed-logit) critic gives another value."""
  key = jax.random.PRNGKey(0)
  mlp = gan_nets.MLPDiscriminator(hidden=8, pieces=2, depth=2, minibatch_kernels=4, minibatch_kernel_dim=3)
  dcgan = gan_nets.DCGANDiscriminator(image_size=8, base_ch=4, norm="layer", minibatch_kernels=4,
                                      minibatch_kernel_dim=3)
  # With minibatch stddev as well, the reference still changes no logit (the stddev sees x's own
  # groups; its gradient keeps StyleGAN's summed-logit convention, so it is not compared here).
  with_std = dcgan.clone(minibatch_std_group=2)
  images = jax.random.normal(key, (4, 8, 8, 1))
  std_params = with_std.init(jax.random.PRNGKey(1), images)
  np.testing.assert_allclose(with_std.apply(std_params, images, reference=images),
                             with_std.apply(std_params, images), rtol=1e-5, atol=1e-6)
  for disc, shape in ((mlp, (6, 2)), (dcgan, (4, 8, 8, 1))):
    real = jax.random.normal(key, shape)
    fake = jax.random.normal(jax.random.fold_in(key, 1), shape)
    params = disc.init(jax.random.PRNGKey(1), real)
    logits = lambda v: disc.apply(params, v)
    np.testing.assert_allclose(disc.apply(params, real, reference=real), logits(real), rtol=1e-5, atol=1e-6)
    coupled = lambda v, reference: disc.apply(params, v, reference=reference)
    norms = lambda x: jnp.sqrt(jnp.sum(_own_example_gradients(logits, x).reshape(x.shape[0], -1) ** 2, -1))
    gp_key = jax.random.PRNGKey(5)
    eps = jax.random.uniform(gp_key, (shape[0],) + (1,) * (len(shape) - 1))
    x_hat = eps * real + (1 - eps) * fake

    @jax.jit  # one program for every value: 14.5 s; op by op, the gradients of gradients took 36 s
    def values():
      return (losses.r1_penalty(coupled, real, coupled=True), jnp.mean(norms(real) ** 2),
              losses.r1_penalty(logits, real),
              losses.gradient_penalty(coupled, real, fake, gp_key, coupled=True),
              jnp.mean((norms(x_hat) - 1) ** 2))
    r1, r1_own, r1_summed, gp, gp_own = map(float, values())
    assert r1 == pytest.approx(r1_own, rel=1e-4)
    assert abs(r1_summed - r1) > 1e-3 * r1
    assert gp == pytest.approx(gp_own, rel=1e-4)


def test_packing_concatenates_consecutive_examples():
  x = jnp.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(pack_examples(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
  images = jnp.arange(4 * 2 * 2 * 3.0).reshape(4, 2, 2, 3)
  packed = pack_examples(images, 2)
  assert packed.shape == (2, 2, 2, 6)
  np.testing.assert_array_equal(packed[1, 0, 1], jnp.concatenate([images[2, 0, 1], images[3, 0, 1]]))


@pytest.mark.parametrize("init_std", [0.0, 0.02])
def test_block_init_starts_each_first_layer_unit_on_one_packed_example(init_std):
  """model.d_pack_init=block: at init, moving packed example j changes only the first-layer units
  u with u mod m == j (every piece of them), and the units' squared weight norms average what the
  dense layer's do (their pre-activation variance is unchanged); the later layers are untouched."""
  m, pieces, hidden = 4, 5, 400
  kw = dict(hidden=hidden, pieces=pieces, depth=2, init_std=init_std, pack=m)
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 2 * m))
  block = gan_nets.MLPDiscriminator(pack_init="block", **kw).init(jax.random.PRNGKey(0), x)["params"]
  dense = gan_nets.MLPDiscriminator(**kw).init(jax.random.PRNGKey(0), x)["params"]
  first = lambda v, p: gan_nets.Maxout(hidden, pieces, init_std=init_std).apply(
      {"params": p["maxout0"]}, v)
  for j in range(m):
    moved = x.at[:, 2 * j:2 * j + 2].add(1.0)
    changed = np.any(np.asarray(first(moved, block) != first(x, block)), axis=0)
    np.testing.assert_array_equal(changed, np.arange(hidden) % m == j)
    assert np.all(np.asarray(first(moved, dense) != first(x, dense)))  # dense: every unit moves
  norms = lambda p: jnp.mean(jnp.sum(p["maxout0"]["linear"]["kernel"] ** 2, axis=0))
  np.testing.assert_allclose(norms(block), norms(dense), rtol=0.05)
  np.testing.assert_array_equal(block["maxout1"]["linear"]["kernel"], dense["maxout1"]["linear"]["kernel"])
  # One example (m = 1) or the dense default: the plain layer, bit for bit.
  single = dict(kw, pack=1)
  y = x[:, :2]
  np.testing.assert_array_equal(
      gan_nets.MLPDiscriminator(pack_init="block", **single).init(jax.random.PRNGKey(0), y)["params"]["maxout0"]["linear"]["kernel"],
      gan_nets.MLPDiscriminator(**single).init(jax.random.PRNGKey(0), y)["params"]["maxout0"]["linear"]["kernel"])


def test_gan_config_reaches_the_block_init():
  """The config key travels to the method's discriminator: its initial first layer is blocked."""
  from jaxgen.config import apply_overrides, load_config_file
  from jaxgen.method import build_method
  config = load_config_file(REPO / "experiments" / "gan_mixture2d.py")
  apply_overrides(config, {"gan.pack": 2, "train.batch_size": 4, "model.d_pack_init": "block"})
  method = build_method(config)
  params = method.init(jax.random.PRNGKey(0))["params"]
  kernel = np.asarray(params["discriminator"]["maxout0"]["linear"]["kernel"])  # [4 inputs, units x pieces]
  unit_example = (np.arange(kernel.shape[1]) // 5) % 2
  assert not np.any(kernel[:2, unit_example == 1]) and not np.any(kernel[2:, unit_example == 0])
  assert np.all(kernel[:2, unit_example == 0] != 0) and np.all(kernel[2:, unit_example == 1] != 0)


# -- the two-player step against a hand-written one --------------------------------------------------

def _toy_players():
  """A linear generator z -> A z + b and a quadratic discriminator x -> w.x + c |x|^2."""
  def generate(g, state, z, key, lod):
    return z @ g["A"] + g["b"], state
  def discriminate(d, state, x, lod, reference=None):  # examples independent: no reference needed
    return x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1), state
  return Players(generate=generate, discriminate=discriminate, pack=lambda x: x,
                 latent=lambda key, n: jax.random.normal(key, (n, 2)), real_view=lambda x, lod: x,
                 lod=lambda step: 0.0)


def _toy_params():
  g = {"A": jnp.array([[1.0, 0.2], [-0.3, 0.8]]), "b": jnp.array([0.1, -0.2])}
  d = {"w": jnp.array([0.5, -0.4]), "c": jnp.array(0.3)}
  return g, d


@pytest.mark.parametrize("unrolled", [0, 2])
def test_two_player_step_matches_a_hand_written_step(unrolled):
  players = _toy_players()
  g_lr, d_lr = 0.05, 0.1
  g_tx, d_tx = optax.sgd(g_lr), optax.sgd(d_lr)
  step = build_two_player_update(players, Settings(objective="non_saturating", unrolled_steps=unrolled),
                                 g_tx, d_tx, "point", (optax.constant_schedule(g_lr), optax.constant_schedule(d_lr)))
  g, d = _toy_params()
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2)) + 1.0
  key = jax.random.PRNGKey(7)
  params, opt, _, metrics = step({"generator": g, "discriminator": d},
                                 {"generator": g_tx.init(g), "discriminator": d_tx.init(d)},
                                 {"generator": {}, "discriminator": {}}, {"point": real}, key, jnp.int32(0))
  # By hand: the keys the step documents, then plain SGD on each player's own loss.
  D = lambda d, x: x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1)
  G = lambda g, z: z @ g["A"] + g["b"]
  critic_key = jax.random.fold_in(key, 0)
  fake = G(g, jax.random.normal(jax.random.fold_in(critic_key, 0), (8, 2)))
  d_loss = lambda d, fake: jnp.mean(jax.nn.softplus(-D(d, real))) + jnp.mean(jax.nn.softplus(D(d, fake)))
  d1 = jax.tree.map(lambda p, gr: p - d_lr * gr, d, jax.grad(d_loss)(d, fake))
  g_key = jax.random.fold_in(key, 1)
  z = jax.random.normal(jax.random.fold_in(g_key, 0), (8, 2))
  def g_loss(g):
    x = G(g, z)
    critic = d1
    for _ in range(unrolled):  # differentiated through: the critic's steps depend on g
      critic = jax.tree.map(lambda p, gr: p - d_lr * gr, critic, jax.grad(d_loss)(critic, x))
    return jnp.mean(jax.nn.softplus(-D(critic, x)))
  g_grad = jax.grad(g_loss)(g)
  g1 = jax.tree.map(lambda p, gr: p - g_lr * gr, g, g_grad)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params["discriminator"], d1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params["generator"], g1)
  assert float(metrics["g_loss"]) == pytest.approx(float(g_loss(g)), rel=1e-5)
  if unrolled:
    # The unrolled gradient is not the plain one: the second-order terms count.
    plain = jax.grad(lambda g: jnp.mean(jax.nn.softplus(-D(d1, G(g, z)))))(g)
    assert float(jnp.max(jnp.abs(plain["A"] - g_grad["A"]))) > 1e-3


def test_unrolling_through_sgd_starts_from_the_adam_trained_critic():
  """unroll_tx: the discriminator takes its Adam step, and the generator's loss is taken after two
  plain SGD steps of the unroll lr from there, differentiated through."""
  players = _toy_players()
  g_lr, d_lr, unroll_lr = 0.05, 0.1, 0.3
  g_tx, d_tx = optax.sgd(g_lr), optax.adam(d_lr)
  step = build_two_player_update(players, Settings(unrolled_steps=2), g_tx, d_tx, "point",
                                 (optax.constant_schedule(g_lr), optax.constant_schedule(d_lr)),
                                 unroll_tx=optax.sgd(unroll_lr))
  g, d = _toy_params()
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2)) + 1.0
  key = jax.random.PRNGKey(7)
  params, *_ = step({"generator": g, "discriminator": d},
                    {"generator": g_tx.init(g), "discriminator": d_tx.init(d)},
                    {"generator": {}, "discriminator": {}}, {"point": real}, key, jnp.int32(0))
  D = lambda d, x: x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1)
  G = lambda g, z: z @ g["A"] + g["b"]
  d_loss = lambda d, fake: jnp.mean(jax.nn.softplus(-D(d, real))) + jnp.mean(jax.nn.softplus(D(d, fake)))
  critic_key = jax.random.fold_in(key, 0)
  fake = G(g, jax.random.normal(jax.random.fold_in(critic_key, 0), (8, 2)))
  # Adam's first step from zero moments is -lr * sign(gradient) (bias-corrected m / sqrt(v)).
  d1 = jax.tree.map(lambda p, gr: p - d_lr * jnp.sign(gr), d, jax.grad(d_loss)(d, fake))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), params["discriminator"], d1)
  z = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 1), 0), (8, 2))
  def g_loss(g):
    x = G(g, z)
    critic = d1
    for _ in range(2):
      critic = jax.tree.map(lambda p, gr: p - unroll_lr * gr, critic, jax.grad(d_loss)(critic, x))
    return jnp.mean(jax.nn.softplus(-D(critic, x)))
  g1 = jax.tree.map(lambda p, gr: p - g_lr * gr, g, jax.grad(g_loss)(g))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), params["generator"], g1)


def test_the_step_penalises_batch_coupled_critics_per_example():
  """A critic coupling the batch, D(x_i) = w.x_i + c / B sum_j |x_i - r_j|^2 over the reference r
  (x itself when none is given): with the others held fixed grad_i = w + 2 c (x_i - mean x), so
  R1 = mean |w + 2 c (x_i - mean x)|^2; the summed-logit gradient (penalty_per_example=False)
  counts x_i in everyone's sum, w + 4 c (x_i - mean x)."""
  def discriminate(d, state, x, lod, reference=None):
    r = x if reference is None else reference
    sq = jnp.sum((x[:, None] - r[None]) ** 2, -1)
    return x @ d["w"] + d["c"] * jnp.mean(sq, 1), state
  players = dataclasses.replace(_toy_players(), discriminate=discriminate)
  g, d = _toy_params()
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2))
  tx = optax.sgd(0.0)
  sched = optax.constant_schedule(0.0)
  centred = real - jnp.mean(real, 0)
  for per_example, factor in ((True, 2.0), (False, 4.0)):
    update = jax.jit(build_two_player_update(
        players, Settings(r1_gamma=1.0, penalty_per_example=per_example), tx, tx, "point", (sched, sched)))
    _, _, _, metrics = update({"generator": g, "discriminator": d},
                              {"generator": tx.init(g), "discriminator": tx.init(d)},
                              {"generator": {}, "discriminator": {}}, {"point": real},
                              jax.random.PRNGKey(7), jnp.int32(0))
    expected = jnp.mean(jnp.sum((d["w"] + factor * d["c"] * centred) ** 2, -1))
    assert float(metrics["r1_penalty"]) == pytest.approx(float(expected), rel=1e-5)


def test_lazy_r1_is_k_times_the_penalty_on_every_kth_step_and_none_between():
  """r1_every = k: the update from state step n is the step with R1 gamma x k when n + 1 (the
  1-based step the loop logs it under) is a multiple of k, and the step without R1 otherwise;
  r1_every = 1 is R1 on every step (checked by hand)."""
  players = _toy_players()
  d_lr = 0.1
  g_tx, d_tx = optax.sgd(0.0), optax.sgd(d_lr)
  g, d = _toy_params()
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2)) + 1.0
  key = jax.random.PRNGKey(7)

  def d_after(settings, step):
    update = jax.jit(build_two_player_update(players, settings, g_tx, d_tx, "point",
                                             (optax.constant_schedule(0.0), optax.constant_schedule(d_lr))))
    params, _, _, metrics = update({"generator": g, "discriminator": d},
                                   {"generator": g_tx.init(g), "discriminator": d_tx.init(d)},
                                   {"generator": {}, "discriminator": {}}, {"point": real}, key,
                                   jnp.int32(step))
    return params["discriminator"], metrics

  # By hand: D(x) = w.x + c |x|^2 has grad_x D = w + 2 c x, so R1 = mean |w + 2 c x|^2.
  D = lambda d, x: x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1)
  fake = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 0), 0), (8, 2)) @ g["A"] + g["b"]
  def d_loss(d, gamma):
    r1 = jnp.mean(jnp.sum((d["w"] + 2 * d["c"] * real) ** 2, -1))
    return (jnp.mean(jax.nn.softplus(-D(d, real))) + jnp.mean(jax.nn.softplus(D(d, fake)))
            + 0.5 * gamma * r1)
  by_hand = lambda gamma: jax.tree.map(lambda p, gr: p - d_lr * gr, d, jax.grad(d_loss)(d, gamma))
  close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), a, b)

  every, _ = d_after(Settings(r1_gamma=0.5), 3)
  close(every, by_hand(0.5))
  on, metrics = d_after(Settings(r1_gamma=0.5, r1_every=4), 7)
  close(on, by_hand(2.0))
  assert float(metrics["r1_penalty"]) == pytest.approx(float(jnp.mean(jnp.sum((d["w"] + 2 * d["c"] * real) ** 2, -1))), rel=1e-5)
  off, metrics = d_after(Settings(r1_gamma=0.5, r1_every=4), 8)
  close(off, by_hand(0.0))
  assert float(metrics["r1_penalty"]) == 0.0
  # The penalty moves this critic: the three steps differ.
  assert float(jnp.abs(on["c"] - off["c"])) > 1e-3 and float(jnp.abs(every["c"] - off["c"])) > 1e-4


def test_n_critic_steps_take_their_own_share_of_the_batch_and_clip_weights():
  players = _toy_players()
  d_tx = optax.sgd(0.1)
  g_tx = optax.sgd(0.0)
  step = build_two_player_update(players, Settings(objective="wasserstein", n_critic=2, weight_clip=0.35),
                                 g_tx, d_tx, "point", (optax.constant_schedule(0.0),) * 2)
  g, d = _toy_params()
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2))
  key = jax.random.PRNGKey(5)
  params, *_ = step({"generator": g, "discriminator": d},
                    {"generator": g_tx.init(g), "discriminator": d_tx.init(d)},
                    {"generator": {}, "discriminator": {}}, {"point": real}, key, jnp.int32(0))
  D = lambda d, x: x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1)
  expected = d
  for i in range(2):  # critic step i: rows i, i + 2, ... and its own latent draw
    k = jax.random.fold_in(key, i)
    fake = jax.random.normal(jax.random.fold_in(k, 0), (4, 2)) @ g["A"] + g["b"]
    loss = lambda d: jnp.mean(D(d, fake)) - jnp.mean(D(d, real[i::2]))
    expected = jax.tree.map(lambda p, gr: jnp.clip(p - 0.1 * gr, -0.35, 0.35), expected, jax.grad(loss)(expected))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), params["discriminator"], expected)
  assert float(jnp.max(jnp.abs(params["discriminator"]["w"]))) <= 0.35


# -- networks ----------------------------------------------------------------------------------------

def test_mlp_networks_take_pacgans_initialisation_and_batch_norm_momentum():
  """init_std > 0: every kernel ~ N(0, std^2) and every bias 0 (PacGAN's 0.02); the generator's
  BatchNorm running mean after one training call is (1 - momentum) x the batch's mean (from 0)."""
  gen = gan_nets.MLPGenerator(out_dim=2, hidden=300, depth=2, bn_momentum=0.95, init_std=0.02)
  disc = gan_nets.MLPDiscriminator(hidden=100, pieces=3, depth=2, init_std=0.02)
  z = jax.random.normal(jax.random.PRNGKey(1), (64, 2))
  g_vars = jax.jit(gen.init)(jax.random.PRNGKey(0), z)
  d_vars = jax.jit(disc.init)(jax.random.PRNGKey(0), z)
  for params in (g_vars["params"], d_vars["params"]):
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      name = jax.tree_util.keystr(path)
      if name.endswith("['bias']"):
        assert not np.any(np.asarray(leaf)), name
      elif name.endswith("['kernel']") and leaf.size >= 3000:
        # flax's default (LeCun normal) would give std 1/sqrt(fan_in): 0.71, 0.058, 0.1.
        assert abs(float(jnp.std(leaf)) - 0.02) < 0.002, name
  # Momentum: run one training call and compare with the first layer's batch mean by hand.
  _, new_state = jax.jit(lambda v: gen.apply(v, z, train=True, mutable=["batch_stats"]))(g_vars)
  dense0 = g_vars["params"]["dense0"]
  batch_mean = jnp.mean(z @ dense0["kernel"] + dense0["bias"], axis=0)
  np.testing.assert_allclose(new_state["batch_stats"]["bn0"]["mean"], 0.05 * batch_mean,
                             rtol=1e-4, atol=1e-7)
  # The default stays flax's initialisation (the configs committed before these keys).
  default = jax.jit(gan_nets.MLPGenerator(out_dim=2, hidden=300, depth=2).init)(jax.random.PRNGKey(0), z)
  assert abs(float(jnp.std(default["params"]["dense1"]["kernel"])) - 300 ** -0.5) < 0.005


def test_dcgan_and_patchgan_shapes(size=16):
  # Under jit: eager flax dispatches (and compiles) op by op, which is far slower.
  key = jax.random.PRNGKey(0)
  gen = gan_nets.DCGANGenerator(image_size=size, channels=3, base_ch=8)
  disc = gan_nets.DCGANDiscriminator(image_size=size, base_ch=8, minibatch_std_group=2)
  patch = gan_nets.PatchGANDiscriminator(base_ch=8, num_layers=2, norm="instance", spectral_norm=True)

  @jax.jit
  def run(z):
    gv = gen.init(key, z, False)
    x, _ = gen.apply(gv, z, True, mutable=["batch_stats"])
    dv = disc.init(key, x, False)
    logits = disc.apply(dv, x, True, mutable=["batch_stats"])[0]
    pv = patch.init(key, x, False)
    patches, _ = patch.apply(pv, x, True, mutable=[gan_nets.SPECTRAL])
    return gv, x, logits, patches

  gv, x, logits, patches = run(jax.random.normal(key, (4, 16)))
  assert x.shape == (4, size, size, 3) and float(jnp.max(jnp.abs(x))) <= 1.0
  # Channels halve as the resolution doubles: 4x4 holds base_ch * 2^(k - 1).
  k = gan_nets.resolution_levels(size)
  assert gv["params"]["project"]["kernel"].shape == (16, 4 * 4 * 8 * 2 ** (k - 1))
  assert logits.shape == (4,)
  assert patches.shape == (4, size // 4, size // 4)


def test_stylegan_growing_schedule_and_progressive_views():
  levels = 4  # 4x4 .. 32x32
  lods = [float(stylegan.lod_schedule(jnp.int32(s), levels, 10)) for s in (0, 9, 10, 15, 20, 30, 35, 60, 100)]
  # 10 steps at 4x4, fade 8x8 in over 10, stable 10, fade 16x16 in, ...
  assert lods == pytest.approx([3, 3, 3, 2.5, 2, 2, 1.5, 0, 0])
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  np.testing.assert_allclose(stylegan.progressive_image(x, jnp.float32(0.0), levels), x, atol=1e-6)
  coarse = stylegan.progressive_image(x, jnp.float32(3.0), levels)
  block = x.reshape(2, 4, 8, 4, 8, 3).mean(axis=(2, 4))  # the 4x4 box average, nearest-upsampled
  np.testing.assert_allclose(coarse, jnp.repeat(jnp.repeat(block, 8, 1), 8, 2), rtol=1e-5, atol=1e-6)


def test_stylegan_equalised_layers_keep_the_activations_scale():
  """He's constant sqrt(2 / fan_in) (ProGAN sec. 4.1) keeps the second moment through LeakyReLU(0.2)
  layers: per layer E[lrelu(h)^2] = 2 (1 + 0.2^2) / 2 E[h^2] = 1.04 E[h^2], so after the 8-layer
  mapping of a pixel-normalised z, E[w^2] is about 1.04^8 = 1.37 (without the gain, 0.52^8 = 0.005:
  w, and the styles, would hardly depend on z at the start)."""
  mapping = stylegan.MappingNetwork(w_dim=256, depth=8)
  z = jax.random.normal(jax.random.PRNGKey(1), (512, 256))
  w = mapping.apply(mapping.init(jax.random.PRNGKey(0), z), z)
  assert 0.6 < float(jnp.mean(w ** 2)) < 2.5
  assert float(jnp.mean(jnp.std(w, axis=0))) > 0.5
  # One layer: a Dense of gain sqrt(2) doubles the second moment of its unit-variance input.
  x = jax.random.normal(jax.random.PRNGKey(2), (4096, 256))
  dense = stylegan.EqualDense(256, gain=math.sqrt(2.0))
  y = dense.apply(dense.init(jax.random.PRNGKey(3), x), x)
  assert float(jnp.mean(y ** 2)) == pytest.approx(2.0, rel=0.1)


def test_stylegan_truncation_mixing_and_w_average():
  gen = stylegan.StyleGANGenerator(image_size=8, channels=1, z_dim=8, w_dim=8, mapping_depth=2,
                                   base_ch=8, max_ch=16, progressive=True)
  disc = stylegan.StyleGANDiscriminator(image_size=8, base_ch=8, max_ch=16, minibatch_std_group=2,
                                        progressive=True)
  key = jax.random.PRNGKey(0)
  z = jax.random.normal(key, (4, 8))

  @jax.jit
  def run(z):
    v = gen.init(key, z, False)
    _, upd = gen.apply(v, z, True, key=key, mutable=[stylegan.STATS])
    w = gen.apply(v, z, method=lambda m, z: m.mapping(z))
    v = dict(v, **upd)
    images = {psi: gen.apply(v, z, False, key=key, truncation=psi) for psi in (0.0, 1.0)}
    low = gen.apply(v, z, False, key=key, lod=1.0)
    dv = disc.init(key, images[1.0], False)
    return upd, w, images, low, disc.apply(dv, images[1.0], True, lod=0.5)

  upd, w, images, low, logits = run(z)
  assert images[1.0].shape == (4, 8, 8, 1) and logits.shape == (4,)
  # Training updates the running mean of w: w_avg <- mean(w) + 0.995 (w_avg - mean(w)), from 0.
  np.testing.assert_allclose(upd[stylegan.STATS]["w_avg"], 0.005 * jnp.mean(w, 0), rtol=1e-4, atol=1e-7)
  # psi = 0: every latent maps to the centre, so with one noise key all images are equal.
  np.testing.assert_allclose(images[0.0], jnp.broadcast_to(images[0.0][:1], images[0.0].shape),
                             rtol=1e-5, atol=1e-6)
  assert float(jnp.std(images[1.0], axis=0).mean()) > 1e-4
  # lod 1 (the 4x4 level only): the image is constant on 2x2 blocks.
  np.testing.assert_allclose(low[:, ::2, ::2], low[:, 1::2, 1::2], rtol=1e-5, atol=1e-6)


def test_stylegan_interpolates_in_w_with_one_noise_image_for_the_grid():
  """styles + synthesize is the sampling path; the method's w grid is the straight line between
  the end points' styles, every image drawn with the same noise."""
  from jaxgen.config import load_config_file
  from jaxgen.method import build_method
  c = load_config_file(REPO / "experiments" / "stylegan_digits.py")
  c.model.w_dim, c.model.mapping_depth, c.model.g_ch, c.model.d_ch, c.model.max_ch = 8, 2, 8, 8, 16
  c.model.progressive = False
  c.gan.latent_dim = 8
  method = build_method(c)
  gen = method.model

  @jax.jit
  def run(key):
    variables = method.init(jax.random.PRNGKey(0))
    # Noise strengths start at 0; make the noise visible.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.5 if "noise_strength" in jax.tree_util.keystr(path) else x,
        variables["params"])
    mutable = {k: v for k, v in variables.items() if k != "params"}
    g_vars = {"params": params["generator"], **mutable["generator"]}
    styles = lambda z: gen.apply(g_vars, z, 0.7, method=gen.styles)
    synth = lambda ws, k, shared=False: gen.apply(g_vars, ws, k, 0.0, shared, method=gen.synthesize)
    z = jax.random.normal(key, (3, 8))
    ws = styles(z)
    same = jnp.broadcast_to(ws[:1], ws.shape)
    out = {"direct": gen.apply(g_vars, z, False, key=key, truncation=0.7), "two_part": synth(ws, key),
           "shared": synth(same, key, True), "apart": synth(same, key),
           "grid": method.interpolate(params, mutable, key, 2, 3, truncation=0.7)}
    k0, k1, noise_key = jax.random.split(key, 3)
    w0, w1 = (styles(jax.random.normal(k, (2, 8))) for k in (k0, k1))
    out["columns"] = [synth(w0 + t * (w1 - w0), noise_key, True) for t in (0.0, 0.5, 1.0)]
    return out

  out = run(jax.random.PRNGKey(3))
  np.testing.assert_allclose(out["two_part"], out["direct"], rtol=1e-5, atol=1e-6)
  # Shared noise: equal styles give equal images; per-image noise does not.
  shared = out["shared"]
  np.testing.assert_allclose(shared, jnp.broadcast_to(shared[:1], shared.shape), rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(out["apart"][0] - out["apart"][1]).max()) > 1e-3
  # The grid: 2 rows x 3 columns; column t of a row is synthesize(w0 + t (w1 - w0)).
  grid = out["grid"].reshape((2, 3) + out["grid"].shape[1:])
  for col, expected in enumerate(out["columns"]):
    np.testing.assert_allclose(grid[:, col], expected, rtol=1e-4, atol=1e-5)


def test_standing_batch_norm_statistics_are_those_of_the_weights_sampled_from():
  """Standing statistics: the first BatchNorm layer follows z -> z W + b with z ~ N(0, I), whose
  mean is b and variance the column sums of W^2; sampling with them does not depend on the batch,
  and approaches sampling with a large batch's own statistics."""
  from jaxgen.config import load_config_file
  from jaxgen.gan.method import batch_norm_mode, standing_batch_stats
  from jaxgen.method import build_method
  c = load_config_file(TINY_GAN)
  assert batch_norm_mode(c) == "standing"  # auto, with an EMA generator
  c.train.ema_decay = 0.0
  assert batch_norm_mode(c) == "running"
  methods = {}
  for mode in ("running", "batch", "standing"):
    c.sample.batch_norm = mode
    methods[mode] = build_method(c)
  method = methods["standing"]
  variables = method.init(jax.random.PRNGKey(0))
  # Weights unlike the ones the running averages (initially 0 and 1) would belong to.
  params = jax.tree.map(lambda x: x + 0.3, variables["params"])
  mutable = {k: v for k, v in variables.items() if k != "params"}
  g = params["generator"]

  @jax.jit
  def run(key):
    stats = standing_batch_stats(method.model, g, mutable["generator"], 2, 16, 256)
    out = {"stats": stats}
    for mode, m in methods.items():
      out[mode] = m.sample(params, mutable, key, 4096)
    out["standing_small"] = method.sample(params, mutable, key, 16)
    return out

  out = run(jax.random.PRNGKey(5))
  w, b = g["dense0"]["kernel"], g["dense0"]["bias"]
  bn0 = out["stats"]["bn0"]
  np.testing.assert_allclose(bn0["var"], jnp.sum(w ** 2, axis=0), rtol=0.1)
  np.testing.assert_allclose(bn0["mean"], b, atol=0.05 * float(jnp.sqrt(jnp.sum(w ** 2, axis=0)).max()))
  # Batch-independent: the first 16 of 4096 samples are the 16 drawn alone (same latents).
  np.testing.assert_allclose(out["standing"][:16], out["standing_small"], rtol=1e-5, atol=1e-6)
  # Close to the batch's own statistics; the stale running averages are far from both.
  off = lambda a: float(jnp.mean(jnp.abs(a - out["batch"])))
  assert off(out["standing"]) < 0.1 * off(out["running"])


# -- whole runs --------------------------------------------------------------------------------------

_DEVICE_SCRIPT = r"""
import json, shutil, sys
import jax
from jaxgen.config import load_config_file
from jaxgen.train.loop import Trainer
config = load_config_file(sys.argv[1])
root = sys.argv[2]
def losses(workdir):
  return [json.loads(l) for l in open(workdir + "/metrics.jsonl")]
Trainer(config, root + "/one", progress=False, devices=jax.devices()[:1]).run()
Trainer(config, root + "/eight", progress=False).run()
# As if killed after the step-10 checkpoint: the rerun resumes there and must redo steps 11-20.
shutil.copytree(root + "/one", root + "/resumed")
shutil.rmtree(root + "/resumed/checkpoints/20")
Trainer(config, root + "/resumed", progress=False, devices=jax.devices()[:1]).run()
print(json.dumps({"devices": len(jax.devices()), "one": losses(root + "/one"),
                  "eight": losses(root + "/eight"), "resumed": losses(root + "/resumed")}))
"""


@pytest.mark.slow
def test_gan_run_on_eight_devices_matches_one_and_resumes_exactly(tmp_path):
  proc = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT, TINY_GAN, str(tmp_path)],
                        env=subprocess_env(devices=8), capture_output=True, text=True, timeout=600, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["devices"] == 8
  one, eight, resumed = out["one"], out["eight"], out["resumed"]
  assert [r["step"] for r in one] == [5, 10, 15, 20]
  for a, b in zip(one, eight):
    for k in ("loss", "d_loss", "g_loss", "d_accuracy", "g_grad_norm", "d_grad_norm"):
      assert b[k] == pytest.approx(a[k], rel=2e-4, abs=1e-5), (a["step"], k)
  # The resumed run's log continues the step-10 one; steps 15 and 20 are recomputed bit for bit.
  by_step = {r["step"]: r for r in resumed}
  for r in one:
    for k in ("loss", "d_loss", "g_loss", "d_accuracy"):
      assert by_step[r["step"]][k] == r[k], (r["step"], k)


def test_cli_trains_samples_and_interpolates_a_gan(tmp_path, capsys):
  from jaxgen.cli import main
  work = tmp_path / "gan"
  assert main(["train", "--config", TINY_GAN, "--workdir", str(work), "--no-progress",
               "--config.train.steps=10"]) == 0
  records = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
  assert {"d_loss", "g_loss", "d_accuracy", "d_grad_norm", "g_grad_norm", "lr", "d_lr"} <= set(records[-1])
  assert records[-1]["lr"] == pytest.approx(1e-3) and records[-1]["d_lr"] == pytest.approx(2e-3)
  npz = [tmp_path / f"s{i}.npz" for i in range(2)]
  for path in npz:
    assert main(["sample", "--workdir", str(work), "--num", "16", "--seed", "3", "--out",
                 str(tmp_path / "s.png"), "--npz", str(path)]) == 0
  a, b = (np.load(p)["samples"] for p in npz)
  np.testing.assert_array_equal(a, b)  # the latent comes from the seed
  assert a.shape == (16, 2) and np.all(np.isfinite(a))
  # The EMA generator samples with standing statistics by default (sample.batch_norm=auto);
  # --batch-norm picks them explicitly, or the running averages, which differ.
  for mode in ("standing", "running"):
    assert main(["sample", "--workdir", str(work), "--num", "16", "--seed", "3", "--out",
                 str(tmp_path / "s.png"), "--npz", str(tmp_path / f"{mode}.npz"), "--batch-norm", mode]) == 0
  np.testing.assert_array_equal(np.load(tmp_path / "standing.npz")["samples"], a)
  assert not np.allclose(np.load(tmp_path / "running.npz")["samples"], a)
  assert main(["sample", "--workdir", str(work), "--num", "12", "--interpolate", "4", "--out",
               str(tmp_path / "interp.png")]) == 0
  assert (tmp_path / "interp.png").exists()
  # Options that do not apply to a GAN exit 2 with a message.
  assert main(["sample", "--workdir", str(work), "--num", "4", "--steps", "10", "--out",
               str(tmp_path / "x.png")]) == 2
  assert main(["sample", "--workdir", str(work), "--num", "4", "--truncation", "0.5", "--out",
               str(tmp_path / "x.png")]) == 2
  assert "StyleGAN" in capsys.readouterr().err
  # An interpolation grid takes no sampler options either (named, not a TypeError).
  assert main(["sample", "--workdir", str(work), "--num", "12", "--interpolate", "4", "--steps", "10",
               "--out", str(tmp_path / "x.png")]) == 2
  assert "--steps: method 'gan' samples without this option" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("--config.gan.objective=wgan_gp", "gp_weight"),
    ("--config.gan.objective=wasserstein", "Lipschitz"),
    ("--config.gan.pack=5", "multiple of gan.pack"),
    ("--config.train.grad_accum_steps=2", "grad_accum_steps"),
    ("--config.model.name=dcgan", "MLP networks"),
    ("--config.gan.objective=softmax", "gan.objective"),
    ("--config.gan.unroll_optimizer=rmsprop", "gan.unroll_optimizer"),
    ("--config.gan.r1_every=0", "gan.r1_every"),
    ("--config.model.mlp_init_std=-0.02", "model.mlp_init_std"),
    ("--config.model.g_bn_momentum=1.0", "model.g_bn_momentum"),
    ("--config.model.minibatch_init_std=0.0", "model.minibatch_init_std"),
    ("--config.model.d_pack_init=sparse", "model.d_pack_init"),
])
def test_bad_gan_configs_exit_2(tmp_path, capsys, override, message):
  from jaxgen.cli import main
  assert main(["train", "--config", TINY_GAN, "--workdir", str(tmp_path / "w"), override]) == 2
  assert message in capsys.readouterr().err


def test_unrolling_through_adam_stays_finite_where_a_gradient_is_zero():
  """A discriminator parameter whose gradient is 0 keeps Adam's second moment at 0, where
  d sqrt(v) / dv is infinite: the unrolled generator gradient is NaN unless eps_root > 0 (what the
  GAN method sets for unrolled runs)."""
  import ml_collections
  from jaxgen.train.optim import make_optimizer
  def discriminate(d, state, x, lod, reference=None):  # the "dead" unit is used but its gradient is exactly 0
    return x @ d["w"] + d["c"] * jnp.sum(x ** 2, -1) + jax.nn.relu(x @ d["dead"] - 100.0), state
  players = dataclasses.replace(_toy_players(), discriminate=discriminate)
  g, d = _toy_params()
  d = dict(d, dead=jnp.array([0.1, 0.1]))
  real = jax.random.normal(jax.random.PRNGKey(3), (8, 2))
  results = {}
  for eps_root in (0.0, 1e-16):
    opt = ml_collections.ConfigDict(dict(name="adam", lr=0.1, eps_root=eps_root))
    d_tx, sched = make_optimizer(opt, 10)
    g_tx = optax.sgd(0.1)
    step = build_two_player_update(players, Settings(unrolled_steps=2), g_tx, d_tx, "point", (sched, sched))
    params, *_ = step({"generator": g, "discriminator": d},
                      {"generator": g_tx.init(g), "discriminator": d_tx.init(d)},
                      {"generator": {}, "discriminator": {}}, {"point": real}, jax.random.PRNGKey(0),
                      jnp.int32(0))
    results[eps_root] = bool(all(jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params["generator"])))
  assert results == {0.0: False, 1e-16: True}


def test_conv_transpose_matches_flax_in_every_implementation():
  from jaxgen.nn.layers import ConvTranspose2D
  for shape, k in (((2, 5, 5, 3), 4), ((2, 4, 6, 2), 4), ((1, 3, 3, 2), 3)):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    ref = nn.ConvTranspose(4, (k, k), (2, 2), padding="SAME")
    v = ref.init(jax.random.PRNGKey(1), x)
    for impl in ("xla", "im2col"):
      np.testing.assert_allclose(ConvTranspose2D(4, k, 2, impl=impl).apply(v, x), ref.apply(v, x),
                                 rtol=1e-5, atol=1e-5)


def test_gan_experiment_configs_validate_and_count_parameters():
  from jaxgen.config import load_config_file
  from jaxgen.method import build_method, validate_method_config
  for name in ("gan_mixture2d", "dcgan_digits", "dcgan_shapes", "sngan_shapes", "stylegan_digits",
               "stylegan_shapes"):
    validate_method_config(load_config_file(REPO / "experiments" / f"{name}.py"))
  # The paper-scale configs build without their datasets: count DCGAN's CelebA generator without
  # allocating it (a 4x4x1024 projection of z, then 512-256-128-3 transposed convolutions).
  method = build_method(load_config_file(REPO / "experiments" / "dcgan_celeba.py"))
  shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0))["params"]["generator"]
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  project = 100 * 16 * 1024 + 16 * 1024
  convs = sum(16 * a * b + b for a, b in ((1024, 512), (512, 256), (256, 128), (128, 3)))
  bn = 2 * (1024 + 512 + 256 + 128)  # scale and bias per channel
  assert count == project + convs + bn
