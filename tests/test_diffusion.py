import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule, check_betas, linear_betas
from jaxgen.samplers.ddpm import ddpm_ancestral


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
  np.testing.assert_allclose(ddpm.predict_x0_from_eps(s, jnp.asarray(xt), t, noise), x0, atol=1e-4)


def test_ancestral_sampler_with_the_exact_denoiser_recovers_gaussian_data():
  """Data N(0, s^2): E[eps | x_t] = sqrt(1-abar) x_t / (abar s^2 + 1 - abar) in closed form."""
  std = 0.5
  s = DiscreteSchedule.from_betas(linear_betas(1000))
  def exact_eps(x, t):
    abar = s.alphas_cumprod[t][:, None]
    return jnp.sqrt(1 - abar) * x / (abar * std ** 2 + 1 - abar)
  noise = jax.random.normal(jax.random.key(1), (20_000, 1))
  for variance in ("fixed_small", "fixed_large"):
    out = np.asarray(jax.jit(lambda n, k: ddpm_ancestral(exact_eps, s, n, k, variance=variance,
                                                          clip_x0=False))(noise, jax.random.key(2)))
    assert abs(out.mean()) < 0.02
    assert out.std() == pytest.approx(std, rel=0.04), variance


def test_sampler_is_deterministic_and_returns_trajectories():
  s = DiscreteSchedule.from_betas(linear_betas(20, 1e-3, 0.2))
  eps = lambda x, t: 0.1 * x
  noise = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
  a = ddpm_ancestral(eps, s, noise, jax.random.key(5))
  b = ddpm_ancestral(eps, s, noise, jax.random.key(5))
  c = ddpm_ancestral(eps, s, noise, jax.random.key(6))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  x, frames = ddpm_ancestral(eps, s, noise, jax.random.key(5), trajectory_every=5)
  np.testing.assert_array_equal(x, a)
  assert frames.shape == (5, 3, 4, 4, 1)  # the noise plus every 5th of 20 steps
  np.testing.assert_array_equal(frames[0], noise)
  np.testing.assert_array_equal(frames[-1], a)


def test_eps_loss_is_zero_for_the_true_noise_predictor():
  """With eps_fn recovering the noise exactly (x0 known), L_simple is 0; with eps_fn=0 it is E[eps^2]=1."""
  s = DiscreteSchedule.from_betas(linear_betas(100))
  x0 = jax.random.uniform(jax.random.key(0), (512, 2, 2, 1), minval=-1, maxval=1)
  def oracle(x_t, t, key):
    return (x_t - s.sqrt_alphas_cumprod[t][:, None, None, None] * x0) / s.sqrt_one_minus_alphas_cumprod[t][:, None, None, None]
  loss, _ = ddpm.eps_mse_loss(oracle, s, x0, jax.random.key(1))
  assert float(loss) < 1e-8
  zero_loss, _ = ddpm.eps_mse_loss(lambda x, t, k: jnp.zeros_like(x), s, x0, jax.random.key(1))
  assert float(zero_loss) == pytest.approx(1.0, abs=0.1)
