"""Rectified flow: the path and target, time densities, integrators against an exact velocity field
(Gaussian to Gaussian), straightness, the likelihood against closed forms, and reflow couplings
(deterministic, device-count invariant, resumable)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxgen.config import load_config_file
from jaxgen.data import couplings as couplings_lib
from jaxgen.errors import ConfigError, DataError
from jaxgen.flow import likelihood, rectified
from jaxgen.samplers import flow as flow_samplers, grids

from conftest import REPO, run_cli

TINY_FLOW = str(REPO / "tests" / "configs" / "tiny_flow.py")

# Data N(m, s^2 I) from noise N(0, I), independent coupling: x_t ~ N(t m, (t^2 s^2 + (1-t)^2) I) and
# E[x_1 - x_0 | x_t = x] = m + (t s^2 - (1 - t)) / (t^2 s^2 + (1 - t)^2) (x - t m) (Gaussian
# conditioning). Its ODE carries x_0 to m + s x_0. The straight coupling (x_0, m + s x_0) has the
# velocity m + (s - 1) x_0 with x_0 = (x - t m) / (1 - t + t s).
M, S = 1.5, 0.5


def exact_velocity(x, t):
  t = t.reshape((-1,) + (1,) * (x.ndim - 1))
  return M + (t * S ** 2 - (1 - t)) / (t ** 2 * S ** 2 + (1 - t) ** 2) * (x - t * M)


def straight_velocity(x, t):
  t = t.reshape((-1,) + (1,) * (x.ndim - 1))
  return M + (S - 1) * (x - t * M) / (1 - t + t * S)


def test_path_and_target_by_hand():
  noise = jnp.array([[1.0, -2.0]])
  data = jnp.array([[3.0, 0.5]])
  np.testing.assert_allclose(rectified.interpolate(noise, data, jnp.array([0.25])),
                             [[0.25 * 3 + 0.75 * 1, 0.25 * 0.5 + 0.75 * -2]])
  np.testing.assert_allclose(rectified.interpolate(noise, data, jnp.array([0.0])), noise)
  np.testing.assert_allclose(rectified.interpolate(noise, data, jnp.array([1.0])), data)
  np.testing.assert_allclose(rectified.velocity_target(noise, data), [[2.0, 2.5]])


def test_loss_is_zero_for_the_target_and_equals_the_mse_otherwise():
  key = jax.random.key(0)
  data = jax.random.normal(jax.random.key(1), (8, 3))
  noise = jax.random.normal(jax.random.key(2), (8, 3))
  perfect = lambda x_t, t, k: data - noise
  value, _ = rectified.flow_matching_loss(perfect, data, key, noise=noise)
  assert float(value) == 0.0
  zero = lambda x_t, t, k: jnp.zeros_like(x_t)
  value, _ = rectified.flow_matching_loss(zero, data, key, noise=noise)
  assert float(value) == pytest.approx(float(jnp.mean(jnp.square(data - noise))), rel=1e-6)


def test_time_densities():
  key = jax.random.key(0)
  n = 200_000
  u = np.asarray(rectified.sample_times(key, n, "uniform"))
  assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
  # logit-normal in SD3's t = 1 - ours: logit(1 - t) ~ N(m, s^2).
  t = np.asarray(rectified.sample_times(key, n, "logit_normal", logit_mean=0.5, logit_std=0.8))
  z = np.log((1 - t) / t)
  assert abs(z.mean() - 0.5) < 0.01 and abs(z.std() - 0.8) < 0.01
  # The mode density with c = 0 is uniform; with c > 0 it puts more mass in the middle.
  t0 = np.asarray(rectified.sample_times(key, n, "mode", mode_scale=0.0))
  assert stats.kstest(t0, "uniform").pvalue > 1e-3
  t1 = np.asarray(rectified.sample_times(key, n, "mode", mode_scale=1.29))
  assert np.mean(np.abs(t1 - 0.5) < 0.25) > np.mean(np.abs(t0 - 0.5) < 0.25) + 0.05
  d = np.asarray(rectified.sample_times(key, n, "discrete", steps=4))
  assert set(np.unique(d)) == {0.0, 0.25, 0.5, 0.75}


def test_euler_error_shrinks_with_the_step_on_the_exact_field():
  x0 = jax.random.normal(jax.random.key(0), (512, 2))
  truth = M + S * x0  # the ODE's map
  errors = []
  for k in (8, 16, 32, 64):
    out = flow_samplers.flow_euler(exact_velocity, grids.flow_times(k), x0).x
    errors.append(float(jnp.max(jnp.abs(out - truth))))
  ratios = np.array(errors[:-1]) / np.array(errors[1:])
  assert np.all(ratios > 1.7) and np.all(ratios < 2.3), (errors, ratios)  # first order
  heun = flow_samplers.flow_heun(exact_velocity, grids.flow_times(32), x0).x
  assert float(jnp.max(jnp.abs(heun - truth))) < errors[2] / 20


def test_one_euler_step_is_exact_for_the_straight_coupling():
  x0 = jax.random.normal(jax.random.key(0), (512, 2))
  out = flow_samplers.flow_euler(straight_velocity, grids.flow_times(1), x0).x
  np.testing.assert_allclose(out, M + S * x0, atol=1e-5)
  # ... and its straightness is zero, while the independent coupling's flow is curved.
  _, s_straight = rectified.straightness(straight_velocity, x0, grids.flow_times(64))
  x_end, s_curved = rectified.straightness(exact_velocity, x0, grids.flow_times(64))
  assert float(jnp.max(jnp.abs(s_straight))) < 5e-5  # float32 rounding of int ||v||^2 - ||D||^2
  assert float(jnp.mean(s_curved)) > 1e-2
  # Straightness by its definition, int ||D - v||^2 dt on the same Euler path, agrees.
  ts = grids.flow_times(64)
  traj = flow_samplers.flow_euler(exact_velocity, ts, x0, trajectory=True).trajectory
  disp = traj[-1] - traj[0]
  direct = sum((ts[i + 1] - ts[i]) * jnp.mean(jnp.square(disp - exact_velocity(
      traj[i], jnp.full((512,), ts[i]))), axis=1) for i in range(64))
  np.testing.assert_allclose(s_curved, direct, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(x_end, traj[-1], atol=1e-5)


@pytest.mark.parametrize("divergence", ["exact", "rademacher"])
def test_likelihood_matches_the_data_density(divergence):
  x = M + S * jax.random.normal(jax.random.key(3), (256, 2))
  fn = jax.jit(lambda x, k: likelihood.log_likelihood(exact_velocity, x, k, divergence=divergence,
                                                      rtol=1e-6, atol=1e-6))
  out = fn(x, jax.random.key(4))
  truth = stats.norm(M, S).logpdf(np.asarray(x)).sum(axis=1)
  if divergence == "exact":
    np.testing.assert_allclose(out.log_prob, truth, atol=2e-3)
  else:
    # The field is linear in x with a diagonal Jacobian: eps^T J eps = tr J for Rademacher eps.
    np.testing.assert_allclose(out.log_prob, truth, atol=2e-3)
  np.testing.assert_allclose(out.noise, (x - M) / S, atol=2e-3)


def test_bits_per_dim_of_a_dequantised_uniform():
  # Uniform on [-1, 1 + 2/255]^d: density (2 + 2/255)^-d ... on the 8-bit scale it is 1/256 per
  # dimension: 8 bits per dimension exactly.
  d = 5
  log_p = jnp.array([-d * math.log(256 / 127.5)])
  np.testing.assert_allclose(likelihood.bits_per_dim(log_p, d, quantization_scale=127.5), [8.0],
                             rtol=1e-6)


# ----------------------------------------------------------------------------- the method and reflow

@pytest.fixture(scope="module")
def flow_run(tiny_flow_run):
  return tiny_flow_run


def test_guided_velocity_is_one_batched_call_of_both_branches():
  from jaxgen.flow.method import guided_velocity
  calls = []

  def velocity(x, t, labels):
    calls.append(x.shape[0])
    return x * t[:, None] + labels[:, None].astype(jnp.float32)
  x, t, labels = jnp.ones((3, 2)), jnp.full((3,), 0.5), jnp.array([1, 2, 3])
  for w in (0.0, 1.0, 2.5):
    out = guided_velocity(velocity, labels, 10, w)(x, t)
    cond, null = 0.5 + labels[:, None], 0.5 + 10.0
    np.testing.assert_allclose(out, null + w * (cond - null) * jnp.ones((3, 2)), rtol=1e-6)
  assert calls == [6, 6, 6]


def test_flow_method_samples_with_every_integrator(flow_run):
  from jaxgen.train.runs import restore_run
  trainer, state, params, _ = restore_run(str(flow_run), "ema")
  key = jax.random.key(0)
  noise = jax.random.normal(key, (16, 2))
  method = trainer.method
  out = {name: method.sample(params, {}, key, 16, sampler=name, steps=64, noise=noise)
         for name in ("flow_euler", "flow_heun", "flow_midpoint", "adaptive")}
  # Four integrators of one ODE from the same noise agree (to their discretisation error).
  for name in ("flow_euler", "flow_heun", "flow_midpoint"):
    assert float(jnp.max(jnp.abs(out[name] - out["adaptive"]))) < 0.05, name
  # A registry sampler through the velocity's denoiser runs too.
  assert method.sample(params, {}, key, 16, sampler="dpmpp_2m", steps=10).shape == (16, 2)
  with pytest.raises(ConfigError, match="unknown"):
    method.sample(params, {}, key, 16, sampler="nope")


def test_reflow_couplings_are_deterministic_resumable_and_device_invariant(flow_run, tmp_path):
  from jaxgen.flow import reflow
  full = tmp_path / "full"
  reflow.write_couplings(str(flow_run), str(full), 250, steps=8, shard_size=100, seed=3)
  source = couplings_lib.CouplingSource(full)
  assert len(source) == 250 and source[249]["noise"].shape == (2,)
  # Killed after one shard, with a half-written shard left behind: the rerun completes it.
  part = tmp_path / "part"
  reflow.write_couplings(str(flow_run), str(part), 250, steps=8, shard_size=100, seed=3, stop_after=1)
  (part / "shard_00001.tmp").mkdir()
  with pytest.raises(DataError, match="incomplete"):
    couplings_lib.CouplingSource(part)
  result = reflow.write_couplings(str(flow_run), str(part), 250, steps=8, shard_size=100, seed=3)
  assert result["already_present"] == 1 and result["shards_written"] == 2
  for i in range(3):
    for name in ("noise", "data"):
      np.testing.assert_array_equal(np.load(full / f"shard_{i:05d}" / f"{name}.npy"),
                                    np.load(part / f"shard_{i:05d}" / f"{name}.npy"))
  # The stored data are the flow's ODE solutions from the stored noise.
  from jaxgen.train.runs import restore_run
  trainer, _, params, _ = restore_run(str(flow_run), "ema")
  rec = [source[i] for i in range(4)]
  again = trainer.method.sample(params, {}, jax.random.key(0), 4, steps=8,
                                noise=jnp.stack([r["noise"] for r in rec]))
  np.testing.assert_allclose(again, np.stack([r["point"] for r in rec]), atol=1e-5)
  # Other settings into the same directory are refused.
  with pytest.raises(DataError, match="other settings"):
    reflow.write_couplings(str(flow_run), str(full), 250, steps=9, shard_size=100, seed=3)
  # 8 devices write the same couplings (the noise is drawn as one global array).
  eight = tmp_path / "eight"
  run_cli(["reflow", "--workdir", str(flow_run), "--out", str(eight), "--num", "250", "--steps", "8",
           "--shard-size", "104", "--seed", "3"], devices=8)
  one = tmp_path / "one"
  reflow.write_couplings(str(flow_run), str(one), 250, steps=8, shard_size=104, seed=3)
  for i in range(3):
    for name in ("noise", "data"):
      np.testing.assert_allclose(np.load(eight / f"shard_{i:05d}" / f"{name}.npy"),
                                 np.load(one / f"shard_{i:05d}" / f"{name}.npy"), atol=1e-5)


def test_reflow_trains_on_couplings_from_the_first_flow(flow_run, tmp_path):
  from jaxgen.flow import reflow
  from jaxgen.train.loop import Trainer
  from jaxgen.train.runs import restore_run
  pairs = tmp_path / "pairs"
  reflow.write_couplings(str(flow_run), str(pairs), 200, steps=8, shard_size=100)
  config = load_config_file(TINY_FLOW)
  config.data.name = "couplings"
  config.data.path = str(pairs)
  config.flow.init_from = str(flow_run)
  trainer = Trainer(config, tmp_path / "rf2", progress=False)
  state = trainer.init_state()
  _, _, first_params, _ = restore_run(str(flow_run), "ema")
  jax.tree.map(np.testing.assert_array_equal, state.params, first_params)  # warm start
  batch = next(trainer.make_data_iterator())
  assert set(batch) == {"noise", "point"}
  trainer.run()
  # A warm start from a run with another network is refused with the mismatched entries.
  config.model.hidden = 48
  with pytest.raises(ConfigError, match="does not fit"):
    Trainer(config, tmp_path / "other", progress=False).init_state()
  config.model.hidden = 32
  # The distillation objective: times on the k-step grid, on couplings only.
  config.flow.time_sampling = "discrete"
  config.data.name = "toy2d"
  with pytest.raises(ConfigError, match="couplings"):
    Trainer(config, tmp_path / "bad", progress=False)


def test_flow_bpd_and_straightness_through_eval(flow_run, tmp_path):
  out = tmp_path / "e.json"
  run_cli(["eval", "--workdir", str(flow_run), "--metric", "bpd,straightness", "--num", "64",
           "--batch", "64", "--steps", "16", "--json", str(out), "--no-progress"])
  import json
  metrics = json.loads(out.read_text())["metrics"]
  assert np.isfinite(metrics["bpd"]) and metrics["nfe"] > 10
  assert metrics["straightness"] > 0


def test_experiment_configs_validate():
  from jaxgen.method import validate_method_config
  for name in ("flow_digits", "flow_toy2d", "consistency_toy2d"):
    validate_method_config(load_config_file(REPO / "experiments" / f"{name}.py"))
  # Consistency distillation names its teacher on the command line.
  with pytest.raises(ConfigError, match="consistency.teacher"):
    validate_method_config(load_config_file(REPO / "experiments" / "consistency_digits.py"))
