"""The DDPM-family method end to end on a tiny U-Net: every parameterization trains (its loss falls
on one batch), class-conditional sampling with guidance, respacing and the bound with labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.config import load_config_file
from jaxgen.diffusion.method import Network, default_labels
from jaxgen.errors import ConfigError
from jaxgen.method import build_method, validate_method_config

TINY = "tests/configs/tiny_ddpm.py"


def _config(**diffusion):
  c = load_config_file(TINY)
  for k, v in diffusion.items():
    c.diffusion[k] = v
  return c


@pytest.fixture(scope="module")
def conditional():
  c = _config(prediction="v", schedule="cosine", learn_variance=True, label_dropout=0.2)
  c.model.num_classes = 10
  c.model.scale_shift_norm = True
  c.sample.variance = "learned"
  method = build_method(c)
  variables = jax.jit(method.init)(jax.random.key(0))
  return c, method, variables["params"]


def test_conditional_v_learned_variance_model_trains_and_samples(conditional):
  c, method, params = conditional
  batch = {"image": jax.random.uniform(jax.random.key(1), (16, 8, 8, 1), minval=-1, maxval=1),
           "label": jnp.arange(16) % 10}
  import optax
  opt = optax.adam(3e-3)

  @jax.jit
  def step(p, s, key):
    (loss, (aux, _)), g = jax.value_and_grad(method.loss, has_aux=True)(p, {}, batch, key)
    updates, s = opt.update(g, s)
    return optax.apply_updates(p, updates), s, loss, aux
  p, s = params, opt.init(params)
  losses = []
  for i in range(30):
    p, s, loss, aux = step(p, s, jax.random.key(7))  # one fixed draw: the loss must fall
    losses.append(float(loss))
  assert "vlb" in aux and losses[-1] < 0.5 * losses[0], losses[::10]

  # Guidance is a traced argument: sweeping it reuses one compilation.
  traces = []
  def sample(p, k, w):
    traces.append(1)
    return method.sample(p, {}, k, 6, steps=5, guidance=w)
  fn = jax.jit(sample)
  outs = [fn(p, jax.random.key(2), jnp.float32(w)) for w in (0.0, 1.0, 4.0)]
  assert len(traces) == 1 and all(o.shape == (6, 8, 8, 1) for o in outs)
  assert all(np.all(np.isfinite(o)) for o in outs) and not np.allclose(outs[0], outs[2])
  bound = jax.jit(lambda p, x, k, lb: method.bpd(p, {}, x, k, labels=lb))(
      p, batch["image"][:4], jax.random.key(3), batch["label"][:4])
  assert bound["bpd"].shape == (4,) and np.all(np.isfinite(bound["bpd"]))


def test_guided_output_is_the_cfg_combination(conditional):
  c, method, params = conditional
  net = Network(c, method.model)
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1))
  t = jnp.array([5, 30])
  labels = jnp.array([3, 7])
  params = jax.tree.map(lambda a: a + 0.05, params)  # move the near-zero output conv
  w = 2.5
  @jax.jit
  def branches(p):
    return (net.guided(p, labels, w)(x, t), net(p, x, t, labels=labels),
            net(p, x, t, labels=jnp.full((2,), 10)))
  (guided, var), (cond, var_c), (uncond, _) = branches(params)
  np.testing.assert_allclose(guided, uncond + w * (cond - uncond), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(var, var_c, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(default_labels(12, 6), np.repeat(np.arange(6), 2))


@pytest.mark.parametrize("prediction, weighting", [("eps", "simple"), ("x0", "snr"), ("edm", "edm"),
                                                   ("v", "min_snr")])
def test_every_parameterization_learns_on_points(prediction, weighting):
  """The 2D MLP (cheap to compile): a few Adam steps on one batch lower each objective."""
  import optax
  c = load_config_file("tests/configs/tiny_toy2d.py")
  c.diffusion.prediction, c.diffusion.loss_weighting = prediction, weighting
  method = build_method(c)
  params = jax.jit(method.init)(jax.random.key(0))["params"]
  batch = {"point": jax.random.normal(jax.random.key(1), (64, 2)) * 0.5}
  opt = optax.adam(1e-2)
  loss_fn = lambda p: method.loss(p, {}, batch, jax.random.key(2))[0]

  @jax.jit
  def train(p):
    def step(carry, _):
      p, s = carry
      updates, s = opt.update(jax.grad(loss_fn)(p), s)
      return (optax.apply_updates(p, updates), s), None
    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=40)
    return loss_fn(params), loss_fn(p)
  before, after = train(params)
  assert np.isfinite(float(before)) and float(after) < 0.7 * float(before), (before, after)


@pytest.mark.parametrize("edit, fragment", [
    (dict(schedule="quadratic"), "diffusion.schedule"),
    (dict(beta_start=0.02, beta_end=1e-4), "must not decrease"),
    (dict(schedule="sigmoid", sigmoid_start=3.0, sigmoid_end=-3.0), "grow monotonically"),
    (dict(schedule="cosine", max_beta=1.0), "grow monotonically"),
    (dict(prediction="score"), "diffusion.prediction"),
    (dict(loss_weighting="p2"), "diffusion.loss_weighting"),
    (dict(min_snr_gamma=0.0), "min_snr_gamma"),
    (dict(label_dropout=1.0), "label_dropout"),
])
def test_bad_diffusion_configs_name_the_key(edit, fragment):
  with pytest.raises(ConfigError, match=fragment):
    validate_method_config(_config(**edit))


@pytest.mark.parametrize("section, key, value, fragment", [
    ("sample", "steps", 51, "sample.steps"),
    ("sample", "variance", "learned", "learn_variance"),
    ("sample", "guidance", 3.0, "label dropout"),
    ("model", "num_classes", 7, "has 10 classes"),
    ("data", "image_size", 7, "cannot be halved"),
    ("model", "attn_resolutions", (2,), "never occur"),
])
def test_bad_sample_and_model_configs_name_the_key(section, key, value, fragment):
  c = _config()
  if key == "image_size":  # the tiny U-Net has one resolution, so nothing is halved: give it two
    c.model.ch_mult, c.model.attn_resolutions = (1, 2), ()
  c[section][key] = value
  with pytest.raises(ConfigError, match=fragment):
    validate_method_config(c)


def test_samplers_grids_and_eta_on_the_unet(conditional):
  c, method, params = conditional
  traces = []

  def sample(p, k, eta):
    traces.append(1)
    return method.sample(p, {}, k, 4, sampler="ddim", steps=6, eta=eta)
  fn = jax.jit(sample)
  outs = [fn(params, jax.random.key(2), jnp.float32(e)) for e in (0.0, 1.0)]
  assert len(traces) == 1 and not np.allclose(outs[0], outs[1])
  # Heun (2 evaluations per step, lax.cond on the last) on EDM's and the log-SNR grid.
  heun = jax.jit(lambda p, k: [method.sample(p, {}, k, 2, sampler="heun", steps=4, grid=g)
                               for g in ("karras", "logsnr")])(params, jax.random.key(3))
  assert all(o.shape == (2, 8, 8, 1) and np.all(np.isfinite(o)) for o in heun)
  assert not np.allclose(heun[0], heun[1])
  x, frames = method.sample(params, {}, jax.random.key(3), 4, sampler="euler", steps=6, trajectory_every=2)
  assert frames.shape == (4, 4, 8, 8, 1)  # grid points 0, 2, 4, 6 of 7
  np.testing.assert_allclose(frames[-1], x, atol=1e-6)
  with pytest.raises(ConfigError, match="Sampler 'nope'"):
    method.sample(params, {}, jax.random.key(3), 4, sampler="nope")


@pytest.mark.parametrize("key,value,fragment", [
    ("spacing", "cubic", "sample.spacing"), ("eta", 2.0, "sample.eta"),
    ("grid", "uniform", "sample.grid"), ("sampler", "rk4", "Sampler 'rk4'")])
def test_bad_sampler_configs_name_the_key(key, value, fragment):
  bad = _config()
  bad.sample[key] = value
  with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
    validate_method_config(bad)
