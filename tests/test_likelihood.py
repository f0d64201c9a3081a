"""The DDPM bound against closed forms: an exact reverse process makes it the true NLL."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxgen.diffusion import ddpm, likelihood
from jaxgen.diffusion.schedules import make_schedule

S, D, B = 0.5, 4, 4000  # data N(0, S^2 I_D)


@pytest.fixture(scope="module")
def gaussian_case():
  schedule = make_schedule("linear", 1000, 1e-4, 0.02)
  abar = np.asarray(schedule.alphas_cumprod, np.float64)

  def exact_eps(x, t):  # E[eps | x_t] for Gaussian data
    a = schedule.alphas_cumprod[t][:, None]
    return jnp.sqrt(1 - a) * x / (a * S * S + 1 - a)

  # The true reverse q(x_{t-1} | x_t) is Gaussian with the posterior mean at E[x0|x_t] and variance
  # betatilde_t + coef_x0^2 Var[x0 | x_t].
  var_x0 = S * S * (1 - abar) / (abar * S * S + 1 - abar)
  coef = np.asarray(schedule.posterior_mean_coef_x0, np.float64)
  true_var = np.asarray(schedule.posterior_variance, np.float64) + coef ** 2 * var_x0
  x0 = S * jax.random.normal(jax.random.PRNGKey(0), (B, D))
  true_nll = -likelihood.gaussian_log_density(x0, 0.0, 2 * math.log(S)).sum(1) / (D * math.log(2))

  def bound(variance):
    fn = jax.jit(lambda x, k: likelihood.bits_per_dim(ddpm.from_eps(schedule, exact_eps), schedule, x, k,
                                                      variance=variance, discrete=False))
    return fn(x0, jax.random.PRNGKey(1))
  return bound, np.asarray(true_nll), np.log(true_var)


def test_bound_is_the_nll_when_the_reverse_process_is_exact(gaussian_case):
  bound, true_nll, true_log_var = gaussian_case
  gap = np.asarray(bound(true_log_var)["bpd"]) - true_nll
  stderr = gap.std() / np.sqrt(len(gap))
  assert abs(gap.mean()) < 4 * stderr + 1e-3, (gap.mean(), stderr)


def test_fixed_variances_give_upper_bounds(gaussian_case):
  bound, true_nll, _ = gaussian_case
  for variance in ("fixed_small", "fixed_large"):
    out = bound(variance)
    gap = np.asarray(out["bpd"]) - true_nll
    assert gap.mean() > 4 * gap.std() / np.sqrt(len(gap))
    parts = out["prior_bpd"] + out["decoder_bpd"] + out["diffusion_bpd"]
    np.testing.assert_allclose(parts, out["bpd"], rtol=1e-5, atol=1e-5)


def test_discretized_likelihood_is_a_distribution_over_the_256_levels():
  levels = jnp.linspace(-1.0, 1.0, 256)
  for mean, scale in ((0.3, 0.2), (-0.99, 0.01), (0.0, 3.0), (-0.5, 0.007), (0.9, 1e-4)):
    p = jnp.exp(likelihood.discretized_gaussian_log_likelihood(levels, mean, jnp.log(scale)))
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
  # Centred on an inner level, the bin [x - 1/255, x + 1/255] holds 2 Phi(1/255 / sigma) - 1.
  sigma = 2e-3
  p = jnp.exp(likelihood.discretized_gaussian_log_likelihood(levels[100], levels[100], jnp.log(sigma)))
  assert float(p) == pytest.approx(2 * scipy.stats.norm.cdf(1 / 255 / sigma) - 1, rel=1e-5)
  # Far in either tail the log-probability stays finite and matches SciPy's float64 value,
  # log(Phi(hi) - Phi(lo)) computed on the side where the tail is small.
  norm = scipy.stats.norm
  for x, mean in ((levels[200], -0.5), (levels[20], 0.5)):
    ours = float(likelihood.discretized_gaussian_log_likelihood(x, mean, jnp.log(0.007)))
    lo, hi = (float(x) - mean - 1 / 255) / 0.007, (float(x) - mean + 1 / 255) / 0.007
    if lo > 0:  # upper tail: Phi(hi) - Phi(lo) = sf(lo) - sf(hi)
      exact = norm.logsf(lo) + np.log(-np.expm1(norm.logsf(hi) - norm.logsf(lo)))
    else:
      exact = norm.logcdf(hi) + np.log(-np.expm1(norm.logcdf(lo) - norm.logcdf(hi)))
    assert np.isfinite(ours) and ours == pytest.approx(exact, rel=1e-4)


def test_normal_kl_closed_form():
  # KL(N(1, 4) || N(0, 1)) = 0.5 (4 + 1 - 1 - log 4)
  assert float(likelihood.normal_kl(1.0, math.log(4.0), 0.0, 0.0)) == pytest.approx(
      0.5 * (4 + 1 - 1 - math.log(4)), rel=1e-6)
