import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.diffusion import ddpm, losses, parameterization as param
from jaxgen.diffusion import schedules as sch
from jaxgen.diffusion.schedules import DiscreteSchedule, check_betas, linear_betas
from jaxgen.samplers import adapters, ancestral, grids


def test_schedule_tables_match_the_paper_definitions():
  betas = linear_betas(1000, 1e-4, 0.02)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
  s = DiscreteSchedule.from_betas(betas)
  abar = np.cumprod(1 - betas)
  np.testing.assert_allclose(s.alphas_cumprod, abar, rtol=1e-6)
  # Posterior variance betatilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), 0 at the first step.
  t = 500
  assert float(s.posterior_variance[t]) == pytest.approx(betas[t] * (1 - abar[t - 1]) / (1 - abar[t]), rel=1e-5)
  assert float(s.posterior_variance[0]) == 0.0
  # The posterior mean coefficients recombine x0 and x_t exactly when x_t = sqrt(abar) x0 (no noise).
  assert float(s.posterior_mean_coef_x0[t] + s.posterior_mean_coef_xt[t] * np.sqrt(abar[t])) == pytest.approx(np.sqrt(abar[t - 1]), rel=1e-5)
  # abar_T is near 0 for the DDPM schedule (the prior is almost N(0, I)).
  assert abar[-1] < 5e-5


def test_bad_betas_are_rejected():
  with pytest.raises(ValueError):
    check_betas(np.array([0.1, 1.2]))
  with pytest.raises(ValueError):
    check_betas(np.array([]))


def test_closed_form_jump_has_the_right_mean_and_variance():
  s = DiscreteSchedule.from_betas(linear_betas(1000))
  x0 = jnp.full((200_000,), 0.7)
  t = jnp.full((200_000,), 300)
  noise = jax.random.normal(jax.random.key(0), x0.shape)
  xt = np.asarray(ddpm.q_sample(s, x0, t, noise))
  abar = np.cumprod(1 - linear_betas(1000))[300]
  assert xt.mean() == pytest.approx(np.sqrt(abar) * 0.7, abs=5e-3)
  assert xt.var() == pytest.approx(1 - abar, rel=1e-2)
  # eps -> x0 inversion is exact.
  alpha, sigma = ddpm.alpha_sigma(s, t, 1)
  np.testing.assert_allclose(param.to_x0_eps("eps", noise, jnp.asarray(xt), alpha, sigma)[0], x0, atol=1e-4)


def _index_eps(schedule, eps_fn):
  """A denoiser from eps_fn(x_t, integer t) (grids of table sigmas give integer timesteps)."""
  return adapters.discrete_denoiser(lambda x, t: eps_fn(x, jnp.round(t).astype(jnp.int32)), schedule)


def _full_grid(schedule):
  return grids.timestep_sigmas(schedule.sigmas, np.arange(schedule.num_timesteps))


def test_ancestral_sampler_with_the_exact_denoiser_recovers_gaussian_data():
  """Data N(0, s^2): E[eps | x_t] = sqrt(1-abar) x_t / (abar s^2 + 1 - abar) in closed form."""
  std = 0.5
  s = DiscreteSchedule.from_betas(linear_betas(1000))
  def exact_eps(x, t):
    abar = s.alphas_cumprod[t][:, None]
    return jnp.sqrt(1 - abar) * x / (abar * std ** 2 + 1 - abar)
  sigmas = _full_grid(s)
  noise = sigmas[0] * jax.random.normal(jax.random.key(1), (20_000, 1))
  for variance in ("fixed_small", "fixed_large"):
    out = jax.jit(lambda n, k: ancestral.ddpm(_index_eps(s, exact_eps), sigmas, n, k,
                                              variance=variance).x)(noise, jax.random.key(2))
    out = np.asarray(out)
    assert abs(out.mean()) < 0.02
    assert out.std() == pytest.approx(std, rel=0.04), variance


def test_sampler_is_deterministic_and_returns_trajectories():
  s = DiscreteSchedule.from_betas(linear_betas(20, 1e-3, 0.2))
  denoise = _index_eps(s, lambda x, t: 0.1 * x)
  sigmas = _full_grid(s)
  noise = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
  a = ancestral.ddpm(denoise, sigmas, noise, jax.random.key(5)).x
  b = ancestral.ddpm(denoise, sigmas, noise, jax.random.key(5)).x
  c = ancestral.ddpm(denoise, sigmas, noise, jax.random.key(6)).x
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  out = ancestral.ddpm(denoise, sigmas, noise, jax.random.key(5), trajectory=True)
  np.testing.assert_array_equal(out.x, a)
  assert out.trajectory.shape == (21, 3, 4, 4, 1)  # the noise plus every one of 20 steps
  assert out.x0_trajectory.shape == (20, 3, 4, 4, 1)
  np.testing.assert_array_equal(out.trajectory[0], noise)
  np.testing.assert_array_equal(out.trajectory[-1], a)


# ----------------------------------------------------------------------------- schedules



def test_cosine_schedule_is_the_closed_form_and_abar_is_the_cumulative_product():
  T, s = 1000, 0.008
  betas = sch.cosine_betas(T, s)
  f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
  abar = f(np.arange(1, T + 1) / T) / f(0.0)
  # Below the 0.999 clip (all but the last step) the product of (1 - beta) is the closed form.
  np.testing.assert_allclose(np.cumprod(1 - betas)[:-1], abar[:-1], rtol=1e-9)
  assert betas.max() == pytest.approx(0.999) and betas[-1] == pytest.approx(0.999)
  tables = DiscreteSchedule.from_betas(betas)
  np.testing.assert_allclose(tables.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-5, atol=1e-12)
  # abar(T/2) = cos^2(0.50397 pi/2) / cos^2(0.0079365 pi/2) = 0.49379 / 0.99984, by hand.
  assert np.cumprod(1 - betas)[T // 2 - 1] == pytest.approx(0.49387, abs=2e-4)


def test_scaled_linear_and_sigmoid_schedules():
  b = sch.scaled_linear_betas(1000, 0.00085, 0.012)
  np.testing.assert_allclose(np.diff(np.sqrt(b)), (0.012 ** 0.5 - 0.00085 ** 0.5) / 999, rtol=1e-9)
  assert b[0] == pytest.approx(0.00085) and b[-1] == pytest.approx(0.012)
  abar = sch.sigmoid_alphas_cumprod(100)
  assert np.all(np.diff(abar) < 0) and abar[-1] == pytest.approx(0.0, abs=1e-12)
  sig = lambda z: 1 / (1 + np.exp(-z))
  # Midway the sigmoid is at 1/2: abar = (sig(3) - 1/2) / (sig(3) - sig(-3)) = 1/2 by symmetry.
  assert abar[49] == pytest.approx(0.5) and sig(0) == 0.5
  check_betas(sch.sigmoid_betas(100))


def test_snr_sigma_and_continuous_time_forms():
  s = DiscreteSchedule.from_betas(linear_betas(1000))
  abar = np.cumprod(1 - linear_betas(1000))
  np.testing.assert_allclose(s.log_snr, np.log(abar / (1 - abar)), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s.sigmas, np.sqrt((1 - abar) / abar), rtol=1e-5)
  # Song et al.'s VP SDE is the T -> inf limit of DDPM's betas: beta(t) = 0.1 + 19.9 t.
  t = np.array([0.1, 0.5, 1.0])
  alpha, sigma = sch.vp_linear(jnp.asarray(t))
  np.testing.assert_allclose(np.square(alpha) + np.square(sigma), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.log(np.square(alpha)), np.log(abar[(t * 1000).astype(int) - 1]), rtol=1e-2)
  a_cos, _ = sch.vp_cosine(jnp.asarray(t))
  np.testing.assert_allclose(np.square(a_cos[:2]), sch.cosine_alphas_cumprod(1000)[[99, 499]], rtol=1e-6)
  a_ve, s_ve = sch.ve(jnp.array([0.0, 1.0]), 0.01, 50.0)
  np.testing.assert_allclose(s_ve, [0.01, 50.0], rtol=1e-6) and np.testing.assert_array_equal(a_ve, 1)
  np.testing.assert_allclose(sch.log_snr(alpha, sigma), 2 * np.log(alpha / sigma), rtol=1e-5)


def test_karras_sigmas():
  sig = sch.karras_sigmas(5, 0.002, 80.0, 7.0)
  assert sig[0] == pytest.approx(80.0) and sig[4] == pytest.approx(0.002) and sig[5] == 0.0
  assert np.all(np.diff(sig) < 0)
  mid = (80.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
  assert sig[2] == pytest.approx(mid)
  np.testing.assert_allclose(sch.karras_sigmas(3, 1.0, 3.0, 1.0, append_zero=False), [3, 2, 1])


def test_respacing_keeps_the_kept_marginals():
  betas = linear_betas(1000)
  kept = sch.spaced_timesteps(1000, 50)
  assert kept[0] == 0 and kept[-1] == 999 and len(kept) == 50
  respaced = sch.respace_betas(betas, kept)
  np.testing.assert_allclose(np.cumprod(1 - respaced), np.cumprod(1 - betas)[kept], rtol=1e-10)
  np.testing.assert_allclose(sch.respace_betas(betas, np.arange(1000)), betas, rtol=1e-9)
  with pytest.raises(ValueError, match="strictly increasing"):
    sch.respace_betas(betas, [5, 3])
  with pytest.raises(ValueError, match=r"\[0, 1000\)"):
    sch.respace_betas(betas, [0, 1000])
  with pytest.raises(ValueError, match="unknown schedule"):
    sch.make_betas("quadratic", 10)


# ----------------------------------------------------------------------------- parameterizations

def _vp_case(n=64):
  k = jax.random.split(jax.random.key(3), 3)
  x0 = jax.random.normal(k[0], (n, 3))
  eps = jax.random.normal(k[1], (n, 3))
  alpha = jax.random.uniform(k[2], (n, 1), minval=0.02, maxval=0.999)
  return x0, eps, alpha, jnp.sqrt(1 - alpha ** 2)


@pytest.mark.parametrize("prediction", param.PREDICTIONS)
def test_conversions_are_exact_inverses(prediction):
  x0, eps, alpha, sigma = _vp_case()
  x_t = alpha * x0 + sigma * eps
  out = param.target(prediction, x0, eps, alpha, sigma)
  x0_back, eps_back = param.to_x0_eps(prediction, out, x_t, alpha, sigma)
  np.testing.assert_allclose(x0_back, x0, atol=2e-4)
  np.testing.assert_allclose(eps_back, eps, atol=2e-3)
  # ||target error||^2 = k^2 ||x0 error||^2, with k^2 from target_scale_sq.
  delta = 1e-2 * jax.random.normal(jax.random.key(9), out.shape)
  x0_err = param.to_x0_eps(prediction, out + delta, x_t, alpha, sigma)[0] - x0_back
  np.testing.assert_allclose(jnp.sum(delta ** 2, 1, keepdims=True),
                             param.target_scale_sq(prediction, alpha, sigma) * jnp.sum(x0_err ** 2, 1, keepdims=True),
                             rtol=2e-3)


def test_v_and_edm_preconditioning_by_hand():
  alpha, sigma, x0, eps = 0.6, 0.8, 1.0, 2.0
  assert float(param.target("v", x0, eps, alpha, sigma)) == pytest.approx(0.6 * 2 - 0.8 * 1)
  x0_v, eps_v = param.to_x0_eps("v", jnp.float32(0.4), jnp.float32(2.2), alpha, sigma)
  assert (float(x0_v), float(eps_v)) == pytest.approx((1.0, 2.0))
  c_skip, c_out, c_in, c_noise = param.edm_preconditioning(jnp.float32(0.5), 0.5)
  assert float(c_skip) == pytest.approx(0.5)
  assert float(c_out) == pytest.approx(0.25 / np.sqrt(0.5))
  assert float(c_in) == pytest.approx(1 / np.sqrt(0.5))
  assert float(c_noise) == pytest.approx(np.log(0.5) / 4)
  # The boundary: as sigma -> 0 the denoiser is the identity (c_skip -> 1, c_out -> 0).
  c_skip, c_out, _, _ = param.edm_preconditioning(jnp.float32(1e-6), 0.5)
  assert float(c_skip) == pytest.approx(1.0) and float(c_out) < 1e-5
  # With sigma_data = 1 the network input c_in x_t / alpha is x_t itself for a VP process.
  np.testing.assert_allclose(param.network_input("edm", jnp.float32(0.7), alpha, sigma, 1.0), 0.7, rtol=1e-6)


def test_loss_weightings():
  alpha, sigma = jnp.array([0.9, 0.3]), jnp.sqrt(1 - jnp.array([0.81, 0.09]))
  snr = np.asarray((alpha / sigma) ** 2)
  w = lambda weighting, prediction: np.asarray(param.target_loss_weight(weighting, prediction, alpha, sigma, gamma=5.0))
  np.testing.assert_allclose(w("simple", "v"), 1.0)
  np.testing.assert_allclose(w("snr", "eps"), 1.0, rtol=1e-6)      # the eps-MSE is SNR-weighted
  np.testing.assert_allclose(w("snr", "x0"), snr, rtol=1e-6)
  np.testing.assert_allclose(w("min_snr", "eps"), np.minimum(snr, 5) / snr, rtol=1e-6)
  np.testing.assert_allclose(w("min_snr", "v"), np.minimum(snr, 5) / (snr + 1), rtol=1e-6)
  np.testing.assert_allclose(w("edm", "edm"), 1.0, rtol=1e-5)      # lambda(sigma) c_out^2 = 1
  s2 = 1 / snr
  np.testing.assert_allclose(w("edm", "x0"), (s2 + 0.25) / (s2 * 0.25), rtol=1e-5)


# ----------------------------------------------------------------------------- losses

def _oracle_apply(prediction, s, x0, noise_of):
  """A network that knows x0: outputs the exact target for whatever x_t it is given."""
  def apply(net_x, net_t, key):
    del key
    if prediction == "edm":
      raise NotImplementedError
    t = net_t
    alpha = s.sqrt_alphas_cumprod[t].reshape(-1, 1, 1, 1)
    sigma = s.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1, 1)
    eps = (net_x - alpha * x0) / sigma
    return param.target(prediction, x0, eps, alpha, sigma), noise_of
  return apply


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_is_zero_for_the_exact_prediction(prediction):
  s = DiscreteSchedule.from_betas(linear_betas(100))
  x0 = jax.random.uniform(jax.random.key(0), (256, 2, 2, 1), minval=-1, maxval=1)
  loss, _ = losses.diffusion_loss(_oracle_apply(prediction, s, x0, None), s, x0, jax.random.key(1),
                                  prediction=prediction, weighting="min_snr")
  assert float(loss) < 1e-6
  if prediction == "eps":  # predicting 0 costs E[eps^2] = 1 under L_simple
    zero, _ = losses.diffusion_loss(lambda x, t, k: (jnp.zeros_like(x), None), s, x0,
                                    jax.random.key(1), prediction="eps")
    assert float(zero) == pytest.approx(1.0, abs=0.1)


def test_hybrid_loss_trains_the_variance_but_not_the_mean_through_the_bound():
  s = DiscreteSchedule.from_betas(linear_betas(100))
  x0 = jax.random.uniform(jax.random.key(0), (64, 2, 2, 1), minval=-1, maxval=1)
  oracle = _oracle_apply("eps", s, x0, None)

  def loss(theta, learn):
    def apply(x, t, k):
      out, _ = oracle(x, t, k)
      return out + theta[0], jnp.full_like(x, theta[1])
    return losses.diffusion_loss(apply, s, x0, jax.random.key(1), learn_variance=learn,
                                 vlb_weight=1e-3)[0]
  theta = jnp.array([0.05, 0.2])
  g_hybrid, g_simple = jax.grad(loss)(theta, True), jax.grad(loss)(theta, False)
  assert float(g_hybrid[0]) == pytest.approx(float(g_simple[0]), rel=1e-5)  # mean: L_simple only
  assert abs(float(g_hybrid[1])) > 1e-4 and float(g_simple[1]) == 0.0


def test_learned_variance_interpolates_between_beta_and_betatilde():
  s = DiscreteSchedule.from_betas(linear_betas(100))
  t = jnp.array([10, 60])
  ones = jnp.ones((2, 1))
  np.testing.assert_allclose(ddpm.learned_log_variance(s, t, ones)[:, 0], np.log(s.betas[t]), rtol=1e-6)
  np.testing.assert_allclose(ddpm.learned_log_variance(s, t, -ones)[:, 0],
                             s.posterior_log_variance_clipped[t], rtol=1e-6)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned"])
def test_ddpm_step_on_a_grid_is_the_respaced_schedules_posterior(variance):
  """The generic DDPM step between grid levels equals ddpm.p_mean_log_variance of the respaced
  DiscreteSchedule (improved DDPM's respacing), the variance included, in the VP scaling."""
  betas = linear_betas(100, 1e-4, 0.05)
  timesteps = np.array([3, 20, 41, 70, 99])
  re = DiscreteSchedule.from_betas(sch.respace_betas(betas, timesteps))
  sigmas = grids.timestep_sigmas(DiscreteSchedule.from_betas(betas).sigmas, timesteps)
  x0 = jnp.array([[0.3, -0.7]])
  v = jnp.array([[0.4, -0.9]])
  for k in range(1, 5):  # respaced index k steps from sigmas[4 - k] to sigmas[5 - k]
    sigma, sigma_next = sigmas[4 - k], sigmas[5 - k]
    alpha = 1 / np.sqrt(1 + sigma ** 2)
    x_t = jnp.array([[1.1, 0.2]])
    t = jnp.array([k])
    pred = ddpm.Prediction(x0, None, v)
    mean, log_var, _ = ddpm.p_mean_log_variance(re, pred, x_t, t, variance=variance)
    alpha_next = 1 / np.sqrt(1 + sigma_next ** 2)
    # Our step in VE coordinates x = x_t / alpha, mapped back by alpha'.
    ve_mean = x0 + (sigma_next / sigma) ** 2 * (x_t / alpha - x0)
    ve_log_var = ancestral.ddpm_step_log_variance(sigma, sigma_next, variance, v)
    np.testing.assert_allclose(alpha_next * ve_mean, mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ve_log_var + 2 * np.log(alpha_next), log_var, rtol=1e-4, atol=1e-4)
