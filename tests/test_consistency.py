"""Consistency models: the parameterisation's boundary condition, the discretisation and its
curriculum, pair sampling, distances, the teacher's ODE step, the objective on Gaussian data where
the exact consistency function is known, sampling, and the method's state (target EMA, curriculum
counter, frozen teacher) through the engine."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxgen.config import load_config_file
from jaxgen.consistency import core
from jaxgen.errors import ConfigError
from jaxgen.samplers import grids, registry

from conftest import REPO, run_cli

TINY_CM = str(REPO / "tests" / "configs" / "tiny_consistency.py")
S = 0.7  # data N(0, S^2 I)


def gaussian_denoiser(x, sigma):
  return x * S ** 2 / (S ** 2 + jnp.square(sigma))


def exact_consistency(sigma_min):
  """The probability-flow ODE of N(0, S^2) data maps x at sigma to x sqrt((S^2 + sigma_min^2) /
  (S^2 + sigma^2)) at sigma_min (dx/dsigma = sigma x / (S^2 + sigma^2))."""
  def f(x, sigma, key=None):
    s = jnp.reshape(sigma, (-1,) + (1,) * (x.ndim - 1))
    return x * jnp.sqrt((S ** 2 + sigma_min ** 2) / (S ** 2 + jnp.square(s)))
  return f


def test_boundary_condition_holds_exactly_for_any_network():
  net = lambda x, t: 100.0 * jnp.sin(x) + t[:, None]  # anything
  x = jax.random.normal(jax.random.key(0), (16, 3))
  for sigma_min in (0.002, 0.01):
    out = core.consistency_function(net, x, jnp.full((16,), sigma_min), sigma_min=sigma_min,
                                    sigma_data=0.5)
    np.testing.assert_array_equal(out, x)


def test_scalings_by_hand():
  c_skip, c_out, c_in = core.scalings(jnp.float32(1.0), 0.002, 0.5)
  assert float(c_skip) == pytest.approx(0.25 / (0.998 ** 2 + 0.25), rel=1e-6)
  assert float(c_out) == pytest.approx(0.5 * 0.998 / math.sqrt(1.25), rel=1e-6)
  assert float(c_in) == pytest.approx(1 / math.sqrt(1.25), rel=1e-6)


def test_levels_are_karras_ascending_and_the_curriculum_doubles():
  n = 18
  levels = np.array([float(core.level(i, n, 0.002, 80.0, 7.0)) for i in range(n)])
  np.testing.assert_allclose(levels, grids.karras(n, 0.002, 80.0, 7.0)[:-1][::-1], rtol=1e-5)
  # iCT eq. 8 with K = 8000, s0 = 10, s1 = 1280: 8 stages of 1000 steps.
  values = [int(core.ict_num_levels(k, 8000, 10, 1280)) for k in (0, 999, 1000, 2500, 6999, 7000, 8000)]
  assert values == [11, 11, 21, 41, 641, 1281, 1281]


def test_lognormal_pair_sampling_follows_the_erf_masses():
  n = 41
  # max_levels above N: the pairs past N - 2 must never be drawn.
  i = np.asarray(core.sample_pairs(jax.random.key(0), 100_000, n, 2 * n, sampling="lognormal",
                                   sigma_min=0.002, sigma_max=80.0, rho=7.0))
  assert i.min() >= 0 and i.max() <= n - 2
  lv = np.array([float(core.level(k, n, 0.002, 80.0, 7.0)) for k in range(n)])
  cdf = erf((np.log(lv) + 1.1) / (math.sqrt(2) * 2.0))
  p = np.diff(cdf) / np.diff(cdf).sum()
  freq = np.bincount(i, minlength=n - 1) / len(i)
  np.testing.assert_allclose(freq, p, atol=5e-3)
  u = np.asarray(core.sample_pairs(jax.random.key(1), 100_000, n, n, sampling="uniform",
                                   sigma_min=0.002, sigma_max=80.0, rho=7.0))
  assert u.min() == 0 and u.max() == n - 2


def test_distances_by_hand():
  a = jnp.array([[3.0, 4.0]])
  b = jnp.zeros((1, 2))
  assert float(core.distance(a, b, "l2")[0]) == pytest.approx(12.5)
  assert float(core.distance(a, b, "l1")[0]) == pytest.approx(3.5)
  assert float(core.distance(a, b, "pseudo_huber", 0.1)[0]) == pytest.approx(math.sqrt(25.01) - 0.1)


def test_teacher_heun_step_by_hand():
  x, s, s_next = 2.0, 3.0, 1.0
  d = (x - x * S ** 2 / (S ** 2 + s ** 2)) / s
  x_e = x + (s_next - s) * d
  d2 = (x_e - x_e * S ** 2 / (S ** 2 + s_next ** 2)) / s_next
  expected = x + (s_next - s) * (d + d2) / 2
  got = core.ode_step(gaussian_denoiser, jnp.array([[x]]), jnp.array([[s]]), jnp.array([[s_next]]))
  assert float(got[0, 0]) == pytest.approx(expected, rel=1e-6)
  euler = core.ode_step(gaussian_denoiser, jnp.array([[x]]), jnp.array([[s]]), jnp.array([[s_next]]),
                        "euler")
  assert float(euler[0, 0]) == pytest.approx(x_e, rel=1e-6)


def test_distillation_loss_of_the_exact_function_vanishes_with_the_teacher_step():
  """With the exact consistency function, what is left of the CD loss is the Heun step's local
  error (third order): doubling N divides the L2 loss by about 2^6."""
  x0 = S * jax.random.normal(jax.random.key(0), (4096, 4))
  f = exact_consistency(0.002)
  kw = dict(sigma_min=0.002, sigma_max=80.0, teacher=gaussian_denoiser, distance_kind="l2")
  losses = [float(core.consistency_loss(f, f, x0, jax.random.key(1), num_levels=n, max_levels=n,
                                        **kw)[0]) for n in (20, 40, 80)]
  assert losses[0] < 1e-3
  ratios = [losses[0] / losses[1], losses[1] / losses[2]]
  assert all(20 < r < 200 for r in ratios), (losses, ratios)
  # Without a teacher (consistency training) the one-sample target does not vanish.
  ct = float(core.consistency_loss(f, f, x0, jax.random.key(1), num_levels=80, max_levels=80,
                                   sigma_min=0.002, sigma_max=80.0)[0])
  assert ct > 100 * losses[2]


def test_consistency_sampling_of_the_exact_function_keeps_the_data_distribution():
  sigma_min = 0.002
  f = lambda x, sigma: exact_consistency(sigma_min)(x, sigma)
  noise = 80.0 * jax.random.normal(jax.random.key(0), (200_000, 1))
  for levels in ([80.0, 0.0], [80.0, 2.0, 0.5, 0.0]):
    out = registry.run("consistency", f, jnp.array(levels), noise, jax.random.key(1),
                       sigma_min=sigma_min).x
    assert float(jnp.var(out)) == pytest.approx(S ** 2 * 80 ** 2 / (S ** 2 + 80 ** 2) if
                                                len(levels) == 2 else S ** 2 + sigma_min ** 2, rel=0.01)
  assert registry.nfe("consistency", [80.0, 2.0, 0.5, 0.0]) == 3


# ----------------------------------------------------------------------------- the method

def test_target_ema_and_curriculum_counter_advance_with_each_update():
  from jaxgen.method import build_method
  from jaxgen.train import step as step_lib
  from jaxgen.train.optim import make_optimizer
  from jaxgen.train.state import create_train_state
  config = load_config_file(TINY_CM)
  config.consistency.target_ema = 0.9
  method = build_method(config)
  optimizer, schedule = make_optimizer(config.optimizer, config.train.steps)
  state = create_train_state(method.init(jax.random.key(0)), optimizer, jax.random.key(1))
  update = jax.jit(step_lib.build_update(method.loss, optimizer, schedule,
                                         post_update=method.post_update))
  batch = {"point": jax.random.normal(jax.random.key(2), (64, 2))}
  target = state.mutable["target"]
  levels = []
  for k in range(3):
    state, metrics = update(state, batch)
    levels.append(float(metrics["num_levels"]))
    target = jax.tree.map(lambda t, p: 0.9 * t + 0.1 * p, target, state.params)
    assert int(state.mutable["consistency"]["step"]) == k + 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               state.mutable["target"], target)
  # iCT's curriculum over 20 steps: 8 stages of 2 steps, N = s0 2^stage + 1.
  assert levels == [11.0, 11.0, 21.0]


@pytest.fixture(scope="module")
def flow_teacher(tiny_flow_run):
  return tiny_flow_run


def test_distillation_run_holds_the_frozen_teacher_and_resumes(flow_teacher, tmp_path):
  from jaxgen.train.runs import restore_run
  args = ["--config.consistency.mode=distillation", f"--config.consistency.teacher={flow_teacher}",
          "--config.consistency.curriculum=fixed", "--config.consistency.target_ema=0.95"]
  import shutil
  from conftest import losses
  work = tmp_path / "cd"
  run_cli(["train", "--config", TINY_CM, "--workdir", str(work), "--no-progress",
           "--config.train.checkpoint_every=10", *args])
  uninterrupted = losses(work)
  # As if killed after the step-10 checkpoint: the resumed run must redo steps 11-20 exactly,
  # which needs the teacher, the target network and the curriculum counter restored.
  shutil.rmtree(work / "checkpoints" / "20")
  run_cli(["train", "--config", TINY_CM, "--workdir", str(work), "--no-progress", *args])
  assert losses(work) == uninterrupted
  trainer, state, params, _ = restore_run(str(work), "ema")
  _, _, teacher_params, _ = restore_run(str(flow_teacher), "ema")
  jax.tree.map(np.testing.assert_array_equal, state.mutable["teacher"], teacher_params)
  assert int(state.mutable["consistency"]["step"]) == 20
  samples = jax.jit(lambda p, k: trainer.method.sample(p, {}, k, 8, steps=2))(params, jax.random.key(0))
  assert samples.shape == (8, 2) and bool(jnp.all(jnp.isfinite(samples)))


def test_bad_consistency_configs_are_refused(flow_teacher, tmp_path):
  from jaxgen.method import validate_method_config
  config = load_config_file(TINY_CM)
  config.consistency.mode = "distillation"
  with pytest.raises(ConfigError, match="teacher"):
    validate_method_config(config)
  config.consistency.teacher = str(tmp_path / "nothing")
  with pytest.raises(Exception, match="no checkpoints"):
    validate_method_config(config)
  config = load_config_file(TINY_CM)
  config.sample.steps = 3
  config.sample.sigmas = (5.0,)
  with pytest.raises(ConfigError, match="2"):
    validate_method_config(config)
  proc = run_cli(["train", "--config", TINY_CM, "--workdir", str(tmp_path / "w"),
                  "--config.consistency.distance=lpips"], check=False)
  assert proc.returncode == 2 and "consistency.distance" in proc.stderr
