"""Samplers against closed forms: single steps, convergence orders, NFE, inversion, no recompiles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule, linear_betas
from jaxgen.samplers import adapters, ancestral, dpm_solver, edm, flow, grids, registry
from jaxgen.samplers.adaptive import probability_flow, solve_ode
from jaxgen.samplers.gaussian_mixture import GaussianMixture, ring2d, sliced_wasserstein
from jaxgen.samplers.inversion import ddim_invert, slerp

VAR = 0.25  # data N(0, VAR): D(x, s) = VAR x / (VAR + s^2), and the ODE map is closed-form


def gauss_denoise(x, sigma):
  return VAR * x / (VAR + sigma ** 2)


def exact_flow(x, s0, s1):
  """The probability-flow ODE dx/ds = s x / (VAR + s^2) solved: x(s1) = x(s0) sqrt((VAR + s1^2) / (VAR + s0^2))."""
  return x * math.sqrt((VAR + s1 ** 2) / (VAR + s0 ** 2))


# ----------------------------------------------------------------------------- single steps

def test_ddim_and_euler_single_step_by_hand():
  const = lambda x, s: jnp.full_like(x, 0.5)  # D = 0.5 everywhere
  x = jnp.array([[2.0]])
  grid = jnp.array([2.0, 1.0])
  # DDIM eta=0: x' = D + sigma' (x - D) / sigma = 0.5 + 1.5 / 2.
  assert float(ancestral.ddim(const, grid, x).x[0, 0]) == pytest.approx(1.25)
  assert float(edm.euler(const, grid, x).x[0, 0]) == pytest.approx(1.25)
  # Heun: d = 0.75; x_e = 1.25; d' = (1.25 - 0.5) / 1 = 0.75; x' = 2 - (0.75 + 0.75) / 2 = 1.25.
  assert float(edm.heun(const, grid, x).x[0, 0]) == pytest.approx(1.25)
  # DDIM eta=1 noise std: c = sigma' sqrt(1 - sigma'^2 / sigma^2) = sqrt(3) / 2, mean D + sigma'^2/sigma^2 (x - D).
  xs = jnp.full((40000, 1), 2.0)
  out = np.asarray(ancestral.ddim(const, grid, xs, jax.random.key(0), eta=1.0).x)
  assert out.mean() == pytest.approx(0.5 + 0.25 * 1.5, abs=0.02)
  assert out.std() == pytest.approx(math.sqrt(3) / 2, rel=0.02)


def test_heun_step_matches_edm_algorithm_on_a_linear_denoiser():
  x, s, s1 = 1.5, 3.0, 1.2
  d = (x - gauss_denoise(x, s)) / s
  xe = x + (s1 - s) * d
  d2 = (xe - gauss_denoise(xe, s1)) / s1
  expected = x + (s1 - s) * (d + d2) / 2
  got = edm.heun(gauss_denoise, jnp.array([s, s1]), jnp.array([[x]])).x
  assert float(got[0, 0]) == pytest.approx(expected, rel=1e-6)


def test_dpmpp_2m_second_step_is_lu_et_al_algorithm_2():
  """x_{i+1} = (s'/s) x - (e^{-h} - 1) D_d, D_d = (1 + 1/(2r)) D_i - D_{i-1} / (2r), r = h_{i-1}/h_i."""
  s0, s1, s2 = 4.0, 2.0, 0.5
  x = 3.0
  d0 = gauss_denoise(x, s0)
  x1 = (s1 / s0) * x - math.expm1(-math.log(s0 / s1)) * d0
  h_prev, h = math.log(s0 / s1), math.log(s1 / s2)
  r = h_prev / h
  d1 = gauss_denoise(x1, s1)
  dd = (1 + 1 / (2 * r)) * d1 - d0 / (2 * r)
  x2 = (s2 / s1) * x1 - math.expm1(-h) * dd
  got = dpm_solver.dpmpp_multistep(gauss_denoise, jnp.array([s0, s1, s2]), jnp.array([[x]]),
                                   order=2, lower_order_final=False).x
  assert float(got[0, 0]) == pytest.approx(x2, rel=1e-5)


def test_dpm_solver_2_step_is_lu_et_al_algorithm_1():
  s, s1 = 3.0, 0.8
  x = 2.0
  eps = lambda x, sg: (x - gauss_denoise(x, sg)) / sg
  h = math.log(s / s1)
  smid = s * math.exp(-h / 2)
  u = x - smid * math.expm1(h / 2) * eps(x, s)
  expected = x - s1 * math.expm1(h) * eps(x, s) - s1 * math.expm1(h) * (eps(u, smid) - eps(x, s))
  got = dpm_solver.dpm_solver(gauss_denoise, jnp.array([s, s1]), jnp.array([[x]]), order=2,
                              lower_order_final=False).x
  assert float(got[0, 0]) == pytest.approx(expected, rel=1e-5)


def test_steps_to_zero_return_the_denoiser_output():
  grid = jnp.array([1.0, 0.0])
  x = jnp.array([[0.8]])
  for name in ("ddim", "euler", "heun", "dpm_solver_3", "dpmpp_3m", "unipc_3", "flow_euler", "flow_heun"):
    out = registry.run(name, gauss_denoise, grid, x)
    assert float(out.x[0, 0]) == pytest.approx(float(gauss_denoise(0.8, 1.0)), rel=1e-5), name


# ----------------------------------------------------------------------------- convergence orders

@pytest.fixture(scope="module")
def mixture_reference():
  """A 4-D mixture, 64 starting points at sigma 10, and their exact (adaptive, tight tolerance)
  probability-flow solutions at sigma 0.3."""
  mixture = GaussianMixture.create([1.0, 2.0, 1.5], [[0.5, -1.0, 0.0, 1.0], [-1.0, 0.5, 0.5, 0.0],
                                                   [0.0, 0.0, -1.0, -0.5]], [[0.4, 0.5, 0.6, 0.3]])
  denoise = lambda x, s: mixture.denoise(x, s)
  x = 10.0 * jax.random.normal(jax.random.key(0), (64, 4))
  ref = jax.jit(lambda x: probability_flow(denoise, x, 10.0, 0.3, rtol=1e-7, atol=1e-7).y)(x)
  return denoise, x, ref


@pytest.mark.parametrize("name,order", [
    ("ddim", 1), ("euler", 1), ("flow_euler", 1), ("heun", 2), ("flow_heun", 2),
    ("flow_midpoint", 2), ("dpm_solver_2", 2), ("dpmpp_2m", 2), ("dpm_solver_3", 3), ("dpmpp_3m", 3),
    ("unipc_2", 3), ("unipc_3", 4), ("unipc_2_bh1", 3), ("unipc_3_bh1", 4)])
def test_halving_the_step_divides_the_ode_error_by_two_to_the_order(name, order, mixture_reference):
  denoise, x, ref = mixture_reference
  options = {"lower_order_final": False} if name.startswith(("dpm", "unipc")) else {}
  errors = []
  for k in (8, 16, 32):
    grid = np.exp(np.linspace(np.log(10.0), np.log(0.3), k + 1)).astype(np.float32)
    out = registry.run(name, denoise, grid, x, **options).x
    errors.append(float(jnp.sqrt(jnp.mean(jnp.square(out - ref)))))
  ratios = [errors[0] / errors[1], errors[1] / errors[2]]
  expected = 2 ** order
  assert expected * 0.75 < ratios[1] < expected * 1.4, (errors, ratios)


def test_adaptive_solver_matches_closed_forms():
  out = jax.jit(lambda y: solve_ode(lambda y, t: -y, y, 0.0, 1.0, rtol=1e-7, atol=1e-9))(jnp.ones(3))
  np.testing.assert_allclose(out.y, np.exp(-1.0), rtol=1e-6)
  assert bool(out.success) and int(out.nfe) == 1 + 6 * (int(out.steps) + int(out.rejected))
  # A PyTree state, integrated backwards in time: y' = t^2, z' = y, y(1) = 1, z(1) = 0, so
  # y(t) = 2/3 + t^3/3 and z(0) = -int_0^1 y dt = -(2/3 + 1/12).
  tree = solve_ode(lambda s, t: {"y": t ** 2 * jnp.ones(()), "z": s["y"]}, {"y": 1.0 * jnp.ones(()),
                   "z": jnp.zeros(())}, 1.0, 0.0, rtol=1e-8, atol=1e-10)
  assert float(tree.y["y"]) == pytest.approx(2 / 3, rel=1e-6)
  assert float(tree.y["z"]) == pytest.approx(-0.75, rel=1e-5)
  ref = probability_flow(gauss_denoise, jnp.array([[5.0]]), 10.0, 0.05, rtol=1e-7, atol=1e-7)
  assert float(ref.y[0, 0]) == pytest.approx(exact_flow(5.0, 10.0, 0.05), rel=1e-5)


# ----------------------------------------------------------------------------- NFE and recompiles

def test_reported_nfe_is_the_number_of_model_calls():
  calls = []

  def counting(x, sigma):
    jax.debug.callback(lambda: calls.append(1))
    return gauss_denoise(x, sigma)

  x = jnp.ones((1, 1))
  full = grids.karras(7, 0.01, 10.0)
  early = grids.stop_at(full, 0.05)  # no final step to 0: the samplers that special-case it
  for grid, names in ((full, list(registry.SAMPLERS)),
                      (early, ["heun", "dpm_solver_3", "dpmpp_3m", "unipc_2", "flow_heun", "flow_midpoint"])):
    for name in names:
      calls.clear()
      options = {"variance": "fixed_small"} if name == "ddpm" else {}
      jax.block_until_ready(registry.run(name, counting, grid, x, jax.random.key(0), **options).x)
      jax.effects_barrier()
      assert len(calls) == registry.nfe(name, grid), (name, grid[-1])


def test_sweeping_guidance_and_eta_compiles_once():
  traces = []
  labels = jnp.array([0, 1])

  def conditional(x, sigma, labels):
    traces.append(1) if len(traces) < 100 else None
    shift = jnp.where(labels == 2, 0.0, labels * 0.5 - 0.25)[:, None]
    return gauss_denoise(x, sigma) + shift

  @jax.jit
  def sample(w, eta, key):
    guided = adapters.classifier_free_guidance(conditional, w, uncond=2)
    return registry.run("ddim", guided, grids.karras(5, 0.01, 10.0), jnp.ones((2, 1)), key,
                        eta=eta, extra_args={"labels": labels}).x

  outs = [sample(w, eta, jax.random.key(0)) for w, eta in ((1.0, 0.0), (3.0, 0.5), (7.5, 1.0))]
  assert sample._cache_size() == 1
  assert not np.allclose(outs[0], outs[1])


# ----------------------------------------------------------------------------- guidance and wrappers

def test_classifier_free_guidance_is_one_batched_call_of_both_branches():
  batch_sizes = []

  def model(x, sigma, labels):
    batch_sizes.append(x.shape[0])
    return x * 0 + labels[:, None].astype(jnp.float32)

  x = jnp.zeros((3, 1))
  cond = jnp.array([1, 2, 3])
  out = adapters.classifier_free_guidance(model, 2.0, uncond=10)(x, 1.0, labels=cond)
  assert batch_sizes == [6]
  np.testing.assert_allclose(out[:, 0], 10 + 2.0 * (np.array([1, 2, 3]) - 10))
  neg = adapters.classifier_free_guidance(model, 3.0, negative=jnp.array([0, 0, 0]))(x, 1.0, labels=cond)
  np.testing.assert_allclose(neg[:, 0], 3.0 * np.array([1, 2, 3]))
  # Guidance rescale with phi = 1 gives the guided x0 the conditional branch's std, per sample.
  wide = lambda x, sigma, labels: x * labels[:, None].astype(jnp.float32)
  xs = jax.random.normal(jax.random.key(0), (2, 16))
  out = adapters.classifier_free_guidance(wide, 5.0, uncond=0, rescale=1.0)(xs, 1.0, labels=jnp.array([1, 2]))
  np.testing.assert_allclose(np.std(np.asarray(out), axis=1), np.std(np.asarray(xs) * [[1], [2]], axis=1),
                             rtol=1e-5)


def test_dynamic_threshold_and_clip():
  x0 = jnp.array([[0.5, -3.0, 2.0, 0.1], [0.2, 0.3, -0.4, 0.9]])
  thr = adapters.dynamic_threshold(lambda x, s: x, percentile=1.0)(x0, 1.0)
  np.testing.assert_allclose(thr[0], np.array([0.5, -3.0, 2.0, 0.1]) / 3.0, rtol=1e-6)
  np.testing.assert_allclose(thr[1], x0[1])  # within [-1, 1]: untouched
  np.testing.assert_allclose(adapters.clip_x0(lambda x, s: x)(x0, 1.0)[0], [0.5, -1.0, 1.0, 0.1])


def test_discrete_denoiser_is_ddpm_predict_at_table_sigmas_and_interpolates_between():
  s = DiscreteSchedule.from_betas(linear_betas(50, 1e-3, 0.1))
  seen = []
  apply = lambda x, t: (seen.append(t) or 0.3 * x, None)
  x_t = jnp.array([[0.4, -1.0]])
  t = jnp.array([17])
  expected = ddpm.predict(apply, s, x_t, t, prediction="v")
  sigma = s.sigmas[17]
  got = adapters.discrete_denoiser(apply, s, "v")(x_t * jnp.sqrt(1 + sigma ** 2), sigma)
  np.testing.assert_allclose(got.x0, expected.x0, rtol=1e-5)
  assert float(seen[-1][0]) == 17.0
  mid = jnp.sqrt(s.sigmas[17] * s.sigmas[18])  # halfway in log sigma
  adapters.discrete_denoiser(apply, s, "v")(x_t, mid)
  assert float(seen[-1][0]) == pytest.approx(17.5, abs=0.02)


def test_velocity_and_denoiser_adapters_are_inverse():
  x = jnp.array([[0.7, -0.2]])
  velocity = adapters.denoiser_velocity(gauss_denoise)
  back = adapters.velocity_denoiser(velocity)
  np.testing.assert_allclose(back(x, 0.6), gauss_denoise(x, 0.6), rtol=1e-5)
  # For data N(0, VAR) the velocity at x_t is D - noise estimate, with D from x_t / t.
  t = 0.4
  s = (1 - t) / t
  d = gauss_denoise(x / t, s)
  np.testing.assert_allclose(velocity(x, jnp.array([t])), d - (x - t * d) / (1 - t), rtol=1e-5)


# ----------------------------------------------------------------------------- stochastic samplers

def test_stochastic_samplers_reach_gaussian_data():
  x = 80.0 * jax.random.normal(jax.random.key(0), (20000, 1))
  grid = grids.karras(200, 0.002, 80.0)  # ancestral steps carry O(1/K) variance errors
  for name, options in (("ddpm", {"variance": "fixed_small"}), ("euler_ancestral", {}),
                        ("dpmpp_2m_sde", {}), ("heun", {"s_churn": 40.0})):
    out = np.asarray(registry.run(name, gauss_denoise, grid, x, jax.random.key(1), **options).x)
    assert out.std() == pytest.approx(math.sqrt(VAR), rel=0.03), name
    assert abs(out.mean()) < 0.02, name


def test_ddim_eta_one_is_ddpm_with_the_posterior_variance():
  grid = grids.karras(8, 0.01, 10.0)
  x = jax.random.normal(jax.random.key(0), (5, 3)) * 10.0
  a = ancestral.ddim(gauss_denoise, grid, x, jax.random.key(3), eta=1.0).x
  b = ancestral.ddpm(gauss_denoise, grid, x, jax.random.key(3), variance="fixed_small").x
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- inversion, early stop, slerp

def test_ddim_inversion_then_sampling_reconstructs_the_input():
  mixture = ring2d(8, 1.0, 0.2)
  denoise = lambda x, s: mixture.denoise(x, s)
  images = mixture.sample(jax.random.key(0), 64)
  grid = grids.karras(200, 0.002, 20.0)
  noise = ddim_invert(denoise, grid, images).x
  assert float(jnp.std(noise)) > 10.0  # it reached the high-noise end
  back = ancestral.ddim(denoise, grid, noise).x
  assert float(jnp.max(jnp.abs(back - images))) < 2e-2


def test_early_stopping_returns_the_partial_sample_and_its_x0():
  grid = grids.stop_at(grids.karras(10, 0.002, 20.0), 0.5)
  assert grid[-1] == pytest.approx(0.5) and np.all(np.diff(grid) < 0)
  x = jnp.array([[10.0]])
  out = ancestral.ddim(gauss_denoise, grid, x, trajectory=True)
  # DDIM's 8 steps down to 0.5 carry a first-order error of ~10% here; the point is where it stopped.
  assert float(out.x[0, 0]) == pytest.approx(exact_flow(10.0, 20.0, 0.5), rel=0.15)
  assert float(out.x0[0, 0]) == pytest.approx(float(gauss_denoise(out.trajectory[-2], grid[-2])[0, 0]), rel=1e-5)


def test_slerp_keeps_norms_and_endpoints():
  z0 = jnp.array([[1.0, 0.0]])
  z1 = jnp.array([[0.0, 1.0]])
  np.testing.assert_allclose(slerp(z0, z1, 0.0), z0, atol=1e-6)
  np.testing.assert_allclose(slerp(z0, z1, 1.0), z1, atol=1e-6)
  mid = slerp(z0, z1, 0.5)
  np.testing.assert_allclose(mid, [[math.sqrt(0.5), math.sqrt(0.5)]], atol=1e-6)


# ----------------------------------------------------------------------------- grids and the mixture

def test_spacings_are_strictly_increasing_subsequences():
  for spacing in grids.SPACINGS:
    for steps in (1, 7, 50, 999, 1000):
      ts = grids.spaced_timesteps(1000, steps, spacing)
      assert len(ts) == steps and ts[0] >= 0 and ts[-1] <= 999 and np.all(np.diff(ts) > 0), spacing
  assert grids.spaced_timesteps(1000, 10, "trailing")[-1] == 999
  assert grids.spaced_timesteps(1000, 10, "leading")[:2].tolist() == [0, 100]
  with pytest.raises(ValueError, match="spacing"):
    grids.spaced_timesteps(100, 5, "cubic")


def test_mixture_denoiser_is_the_posterior_mean():
  """Monte Carlo E[x0 | x] by importance weights against the closed form."""
  mixture = GaussianMixture.create([1.0, 3.0], [[-1.0, 0.0], [1.0, 0.5]], [[0.3, 0.2], [0.1, 0.4]])
  sigma = 0.7
  x = jnp.array([[0.2, 0.1]])
  x0 = mixture.sample(jax.random.key(0), 400000)
  logw = -0.5 * jnp.sum(jnp.square(x - x0), -1) / sigma ** 2
  w = jax.nn.softmax(logw)
  np.testing.assert_allclose(mixture.denoise(x, sigma)[0], jnp.sum(w[:, None] * x0, 0), atol=5e-3)
  key = jax.random.key(1)
  a, b = mixture.sample(key, 3000), mixture.sample(jax.random.key(2), 3000)
  assert float(sliced_wasserstein(key, a, b)) < 0.05
  assert float(sliced_wasserstein(key, a, b + 1.0)) > 0.5


def test_flow_integrators_on_an_exact_velocity():
  """Noise N(0,1) -> data N(0, VAR) with independent ends: along x_t = t x1 + (1 - t) x0 the
  velocity is E[x1 - x0 | x_t] = (t VAR - (1 - t)) x_t / (t^2 VAR + (1 - t)^2), whose flow scales
  every point by std(t) / std(0), so noise z ends exactly at sqrt(VAR) z."""
  velocity = lambda x, t: ((t * VAR - (1 - t)) / (t ** 2 * VAR + (1 - t) ** 2))[:, None] * x
  z = jnp.array([[1.0], [-2.0]])
  # (The midpoint rule's leading error term happens to cancel on this linear field; its order is
  # checked on the mixture above.)
  for fn, order in ((flow.flow_euler, 1), (flow.flow_heun, 2)):
    errors = [float(jnp.max(jnp.abs(fn(velocity, grids.flow_times(k), z).x - math.sqrt(VAR) * z)))
              for k in (20, 40, 80)]
    assert 0.75 * 2 ** order < errors[1] / errors[2] < 1.4 * 2 ** order, (fn.__name__, errors)
  assert errors[-1] < 1e-3


@pytest.mark.parametrize("b_h", ["bh2", "bh1"])
def test_unipc_corrects_with_the_new_evaluation_at_no_extra_cost(b_h):
  """UniPC-1 and -2 by hand: DDIM predicts x~1; D(x~1) corrects x1 = e^{-h} x0 + (1 - e^{-h}) D0
  + B(h) (D1 - D0) / 2; the next prediction starts from the corrected x1 with D1: DDIM (UniPC-1) or
  x~2 = e^{-h'} x1 + (1 - e^{-h'}) D1 + B(h') (D1 - D0) / (2 r), r = h / h' (UniPC-2), where
  B(h) = 1 - e^{-h} (bh2) or h (bh1). The last step is not corrected."""
  from jaxgen.samplers.unipc import unipc
  s0, s1, s2 = 4.0, 1.5, 0.5
  x0 = 3.0
  h0, h1 = math.log(s0 / s1), math.log(s1 / s2)
  b = (lambda h: h) if b_h == "bh1" else (lambda h: 1 - math.exp(-h))
  d0 = gauss_denoise(x0, s0)
  pred1 = math.exp(-h0) * x0 + (1 - math.exp(-h0)) * d0
  d1 = gauss_denoise(pred1, s1)
  x1 = math.exp(-h0) * x0 + (1 - math.exp(-h0)) * d0 + b(h0) * 0.5 * (d1 - d0)
  ddim = math.exp(-h1) * x1 + (1 - math.exp(-h1)) * d1
  second_order = ddim + b(h1) * 0.5 * (d1 - d0) / (h0 / h1)
  for order, expected in ((1, ddim), (2, second_order)):
    got = unipc(gauss_denoise, jnp.array([s0, s1, s2]), jnp.array([[x0]]), order=order, b_h=b_h,
                lower_order_final=False).x
    assert float(got[0, 0]) == pytest.approx(expected, rel=1e-5), order
  # The two B(h) move x1 apart by far more than the tolerance: the test tells them apart.
  assert abs(h0 - (1 - math.exp(-h0))) * abs(d1 - d0) / 2 > 1e-3 * abs(x1)


def test_sampler_benchmark_reports_rows_and_checks():
  from jaxgen.samplers.benchmark import bench_problem, format_table
  result = bench_problem("ring2d", ["ddim", "euler", "heun", "dpmpp_2m", "ddpm"], (10, 20),
                         grid="logsnr", num=200, repeats=1)
  assert [(r["sampler"], r["nfe"]) for r in result["rows"]][:6] == [
      ("ddim", 10), ("ddim", 20), ("euler", 10), ("euler", 20), ("heun", 9), ("heun", 19)]
  ddpm_rows = [r for r in result["rows"] if r["sampler"] == "ddpm"]
  assert all(r["ode_err"] is None and r["sw"] > 0 for r in ddpm_rows)
  assert all(r["ode_err"] > 0 and r["wall_s"] > 0 and r["overhead"] > 0 for r in result["rows"][:8])
  assert result["ddim_1000_ode_err"] < 1e-2 and result["checks"]["ddim_1000_matches_ode"]
  assert set(result["checks"]) == {"dpmpp_2m_beats_ddim_at_10_nfe", "heun_beats_euler_from_20_nfe",
                                   "ddim_1000_matches_ode", "ddim_1000_relative_err"}
  assert "| dpmpp_2m | 10 |" in format_table(result)


def test_dpm_solver_3_step_is_lu_et_al_algorithm_2():
  s, s_next = 3.0, 0.8
  x = 2.0
  eps = lambda x, sg: (x - gauss_denoise(x, sg)) / sg
  h = math.log(s / s_next)
  r1, r2 = 1 / 3, 2 / 3
  s1, s2 = s * math.exp(-r1 * h), s * math.exp(-r2 * h)
  e0 = eps(x, s)
  u1 = x - s1 * math.expm1(r1 * h) * e0
  d1 = eps(u1, s1) - e0
  u2 = x - s2 * math.expm1(r2 * h) * e0 - s2 * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1) * d1
  d2 = eps(u2, s2) - e0
  expected = x - s_next * math.expm1(h) * e0 - (s_next / r2) * (math.expm1(h) / h - 1) * d2
  got = dpm_solver.dpm_solver(gauss_denoise, jnp.array([s, s_next]), jnp.array([[x]]), order=3,
                              lower_order_final=False).x
  assert float(got[0, 0]) == pytest.approx(expected, rel=1e-5)


def test_dpmpp_3m_third_step_and_2m_sde_step_by_hand():
  """3M's third step integrates the quadratic through the last three D values (in lambda) against
  e^{-(h - tau)} exactly: checked with numpy's polynomial fit and scipy's quadrature."""
  from scipy.integrate import quad
  sig = [6.0, 3.0, 1.2, 0.4]
  x = 5.0
  hs = [math.log(sig[i] / sig[i + 1]) for i in range(3)]
  d = [gauss_denoise(x, sig[0])]
  x = math.exp(-hs[0]) * x + -math.expm1(-hs[0]) * d[0]                       # order 1
  d.append(gauss_denoise(x, sig[1]))
  r = hs[0] / hs[1]
  x = math.exp(-hs[1]) * x + -math.expm1(-hs[1]) * (d[1] + (d[1] - d[0]) / (2 * r))  # order 2
  d.append(gauss_denoise(x, sig[2]))
  h = hs[2]
  poly = np.polyfit([-hs[1] - hs[0], -hs[1], 0.0], [d[0], d[1], d[2]], 2)
  integral = quad(lambda tau: math.exp(-(h - tau)) * np.polyval(poly, tau), 0.0, h, epsabs=1e-12)[0]
  expected = math.exp(-h) * x + integral
  got = dpm_solver.dpmpp_multistep(gauss_denoise, jnp.array(sig), jnp.array([[5.0]]), order=3,
                                   lower_order_final=False).x
  assert float(got[0, 0]) == pytest.approx(expected, rel=1e-5)
  # SDE-DPM-Solver++(2M), second step with eta = 1: x' = (s'/s) e^{-h} x + (1 - e^{-2h}) D1
  # + (1 - e^{-2h}) (D1 - D0) / (2 r) + s' sqrt(1 - e^{-2h}) z, z from the step's key.
  key = jax.random.key(4)
  out = dpm_solver.dpmpp_multistep(gauss_denoise, jnp.array(sig[:3]), jnp.array([[5.0]]), key,
                                   order=2, eta=1.0, lower_order_final=False, trajectory=True)
  z0 = float(jax.random.normal(jax.random.fold_in(key, 0), (1, 1))[0, 0])
  z1 = float(jax.random.normal(jax.random.fold_in(key, 1), (1, 1))[0, 0])
  h0, h1 = hs[0], hs[1]
  x1 = math.exp(-2 * h0) * 5.0 + -math.expm1(-2 * h0) * d[0] + sig[1] * math.sqrt(-math.expm1(-2 * h0)) * z0
  np.testing.assert_allclose(out.trajectory[1, 0, 0], x1, rtol=1e-5)
  e1 = gauss_denoise(x1, sig[1])
  r = h0 / h1
  x2 = (math.exp(-2 * h1) * x1 + -math.expm1(-2 * h1) * (e1 + (e1 - d[0]) / (2 * r))
        + sig[2] * math.sqrt(-math.expm1(-2 * h1)) * z1)
  np.testing.assert_allclose(out.x[0, 0], x2, rtol=1e-5)


def test_flow_single_steps_by_hand():
  v = lambda x, t: x * (1.0 + t)[:, None]   # v(x, t) = (1 + t) x
  ts = jnp.array([0.2, 0.6])
  x = jnp.array([[1.0]])
  dt = 0.4
  assert float(flow.flow_euler(v, ts, x).x[0, 0]) == pytest.approx(1 + dt * 1.2)
  xe = 1 + dt * 1.2
  assert float(flow.flow_heun(v, ts, x).x[0, 0]) == pytest.approx(1 + dt / 2 * (1.2 + 1.6 * xe))
  xm = 1 + dt / 2 * 1.2
  assert float(flow.flow_midpoint(v, ts, x).x[0, 0]) == pytest.approx(1 + dt * 1.4 * xm)


def test_continuous_denoiser_on_a_vp_linear_process():
  """An exact eps network of continuous time t on vp_linear (data N(0, VAR)): its D is the closed form."""
  from jaxgen.diffusion.schedules import vp_linear
  ts = np.linspace(1e-3, 1.0, 20001)
  alphas, sigmas_t = (np.asarray(a) for a in vp_linear(jnp.asarray(ts)))
  ratio = sigmas_t / alphas

  def time_of_sigma(s):  # invert sigma/alpha, increasing in t, by interpolation
    return jnp.interp(s, jnp.asarray(ratio), jnp.asarray(ts))

  def exact_eps(x_t, t):
    a, s = vp_linear(t[:, None])
    return s * x_t / (a ** 2 * VAR + s ** 2)

  denoise = adapters.continuous_denoiser(exact_eps, lambda t: vp_linear(t), time_of_sigma, "eps")
  x = jnp.array([[0.8], [-2.0]])
  for sigma in (0.3, 1.5, 6.0):
    np.testing.assert_allclose(denoise(x, jnp.float32(sigma)).x0, gauss_denoise(x, sigma), rtol=2e-3)
