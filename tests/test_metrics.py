"""Metrics against closed forms, plain float64 SciPy computations and constructed sets."""

import numpy as np
import pytest
import scipy.linalg

from jaxgen.errors import DataError
from jaxgen.metrics import frechet, manifold, modes


def _random_cov(rng, d, rank=None):
  a = rng.standard_normal((d, rank or d))
  return a @ a.T / d


def test_frechet_matches_closed_form_for_commuting_gaussians():
  # Diagonal covariances commute: Tr((S1 S2)^1/2) = sum sqrt(s1_i s2_i), so
  # FD = |mu1-mu2|^2 + sum (sqrt(s1_i) - sqrt(s2_i))^2.
  s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = 1.0 + 4.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  result = frechet.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
  assert result.distance == pytest.approx(expected, rel=1e-12)
  assert result.mean_term == pytest.approx(5.0)


def test_frechet_of_scaled_covariance():
  # S2 = c^2 S1 gives Tr((S1 S2)^1/2) = c Tr(S1): FD = (1 - c)^2 Tr(S1).
  rng = np.random.default_rng(0)
  s1 = _random_cov(rng, 6)
  result = frechet.frechet_distance(np.zeros(6), s1, np.zeros(6), 9.0 * s1)
  assert result.distance == pytest.approx(4.0 * np.trace(s1), rel=1e-10)


def test_frechet_agrees_with_scipy_sqrtm_and_is_symmetric():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((400, 16)), 0.5 + 1.3 * rng.standard_normal((300, 16)) @ rng.standard_normal((16, 16)) / 4
  mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
  ours = frechet.frechet_distance(mu1, s1, mu2, s2).distance
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert ours == pytest.approx(reference, rel=1e-9)
  assert frechet.frechet_distance(mu2, s2, mu1, s1).distance == pytest.approx(ours, rel=1e-9)


def test_frechet_of_a_set_with_itself_is_zero_even_when_singular():
  rng = np.random.default_rng(2)
  s = _random_cov(rng, 32, rank=5)  # rank 5 in 32 dimensions: sqrtm-based code needs an epsilon
  result = frechet.frechet_distance(np.ones(32), s, np.ones(32), s)
  assert abs(result.distance) < 1e-9 * np.trace(s)


def test_frechet_rejects_indefinite_covariance_and_mismatched_shapes():
  s = np.diag([1.0, 1.0, -0.5])
  with pytest.raises(DataError, match="complex residue"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), s)
  with pytest.raises(DataError, match="same feature network"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_stats_match_numpy_float64():
  rng = np.random.default_rng(3)
  x = 1e3 + rng.standard_normal((1000, 8)).astype(np.float32)  # a large mean stresses cancellation
  stats = frechet.FeatureStats(8)
  for chunk in np.array_split(x, 7):
    stats.update(chunk)
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-13)
  np.testing.assert_allclose(stats.cov, np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-12)
  with pytest.raises(DataError, match="NaN"):
    stats.update(np.full((2, 8), np.nan))


def test_stats_roundtrip_through_npz(tmp_path):
  rng = np.random.default_rng(4)
  stats = frechet.FeatureStats(4).update(rng.standard_normal((50, 4)))
  stats.save(tmp_path / "s.npz", network="x")
  loaded = frechet.FeatureStats.load(tmp_path / "s.npz")
  np.testing.assert_array_equal(loaded.cov, stats.cov)
  assert loaded.count == 50


def test_kid_is_unbiased_on_same_distribution_and_positive_on_different():
  rng = np.random.default_rng(5)
  values = [frechet.kernel_inception_distance(rng.standard_normal((200, 8)),
                                              rng.standard_normal((200, 8)),
                                              num_subsets=5, subset_size=100, seed=i).mean
            for i in range(40)]
  # Unbiased: the mean over independent draws is within 3 standard errors of 0 (a biased V-statistic
  # would sit at about +2 E[k(x,x)]/n, tens of standard errors away).
  assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))
  shifted = frechet.kernel_inception_distance(rng.standard_normal((200, 8)),
                                              1.0 + rng.standard_normal((200, 8)),
                                              num_subsets=5, subset_size=100)
  assert shifted.mean > 10 * np.std(values)


def test_mmd_matches_hand_computation():
  x, y = np.array([[1.0], [0.0]]), np.array([[0.0], [2.0]])
  k = lambda a, b: (a * b + 1.0) ** 3
  expected = (2 * k(1, 0)) / 2 + (2 * k(0, 2)) / 2 - 2 * (k(1, 0) + k(1, 2) + k(0, 0) + k(0, 2)) / 4
  assert frechet.mmd2_unbiased(x, y) == pytest.approx(expected)


def test_precision_recall_identical_and_disjoint_sets():
  rng = np.random.default_rng(6)
  x = rng.standard_normal((300, 5))
  assert manifold.precision_recall(x, x.copy(), k=3) == (1.0, 1.0)
  density, coverage = manifold.density_coverage(x, x.copy(), k=5)
  assert coverage == 1.0 and density >= 1.0
  far = x + 100.0
  assert manifold.precision_recall(x, far, k=3) == (0.0, 0.0)
  assert manifold.density_coverage(x, far, k=5) == (0.0, 0.0)


def test_precision_high_recall_low_for_a_collapsed_generator():
  rng = np.random.default_rng(7)
  real = rng.standard_normal((1000, 2))
  collapsed = 0.1 * rng.standard_normal((1000, 2))  # inside the real support, covering a sliver
  precision, recall = manifold.precision_recall(real, collapsed, k=3)
  assert precision > 0.95 and recall < 0.2


def test_knn_radii_by_hand():
  x = np.array([[0.0], [1.0], [3.0], [7.0]])
  np.testing.assert_allclose(manifold.knn_radii(x, 1), [1.0, 1.0, 2.0, 4.0])
  np.testing.assert_allclose(manifold.knn_radii(x, 2), [3.0, 2.0, 3.0, 6.0])


def test_density_by_hand():
  real = np.array([[0.0], [1.0], [3.0], [7.0]])  # k=1 radii 1, 1, 2, 4
  fake = np.array([[0.5], [5.0], [20.0]])  # 0.5 in balls 0 and 1; 5.0 in balls 2 (3+-2) and 3 (7+-4)
  density, coverage = manifold.density_coverage(real, fake, k=1)
  assert density == pytest.approx(4 / 3)
  assert coverage == 1.0


CENTRES = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def test_mode_coverage_all_modes():
  samples = np.repeat(CENTRES, 25, axis=0) + 0.01
  r = modes.mode_coverage(samples, CENTRES, std=0.02)
  assert (r.modes_captured, r.high_quality_percent, r.histogram) == (4, 100.0, (25, 25, 25, 25))
  assert r.reverse_kl == pytest.approx(0.0, abs=1e-12)


def test_mode_coverage_one_mode_and_off_mode_points():
  samples = np.concatenate([np.repeat(CENTRES[:1], 30, axis=0),
                            np.array([[0.5, 0.5]] * 10)])  # far (0.7) from every centre
  r = modes.mode_coverage(samples, CENTRES, std=0.02)
  assert r.modes_captured == 1
  assert r.high_quality_percent == pytest.approx(75.0)
  assert r.reverse_kl == pytest.approx(np.log(4))  # all high-quality mass on one of 4 modes
  assert r.histogram == (30, 0, 0, 0)
  # 3 standard deviations is the boundary: 0.059 away counts, 0.061 does not.
  edge = modes.mode_coverage(np.array([[1.059, 0.0], [1.061, 0.0]]), CENTRES, std=0.02)
  assert edge.high_quality_percent == 50.0
  # The 10 points at (0.5, 0.5) are 0.707 = 35 std from every centre: off mode, and the median
  # distance is that of the 30 points on a centre (0).
  assert r.off_mode_percent == pytest.approx(25.0)
  assert r.median_distance_std == 0.0


def test_mode_coverage_diagnostics_on_the_mixture_itself():
  """Samples from the mixture: the nearest-centre distance / std is Rayleigh distributed, median
  sqrt(2 ln 2); none is off mode. A generator whose modes are twice as wide doubles the median."""
  rng = np.random.default_rng(0)
  std = 0.02
  idx = rng.integers(len(CENTRES), size=40000)
  noise = rng.normal(size=(40000, 2))
  exact = modes.mode_coverage(CENTRES[idx] + std * noise, CENTRES, std=std)
  assert exact.median_distance_std == pytest.approx(np.sqrt(2 * np.log(2)), rel=0.02)
  assert exact.off_mode_percent == 0.0
  assert exact.high_quality_percent == pytest.approx(100 * (1 - np.exp(-4.5)), abs=0.2)
  wide = modes.mode_coverage(CENTRES[idx] + 2 * std * noise, CENTRES, std=std)
  assert wide.median_distance_std == pytest.approx(2 * np.sqrt(2 * np.log(2)), rel=0.02)
  # Twice as wide: P(r > 6 std) = exp(-(6/2)^2 / 2) = exp(-4.5) = 1.1%.
  assert wide.off_mode_percent == pytest.approx(100 * np.exp(-4.5), abs=0.2)


def test_mode_coverage_reverse_kl_by_hand():
  samples = np.repeat(CENTRES[:2], [3, 1], axis=0)
  r = modes.mode_coverage(samples, CENTRES, std=0.02)
  q = np.array([0.75, 0.25])
  assert r.reverse_kl == pytest.approx(np.sum(q * np.log(q * 4)))


def test_class_scores_by_hand():
  from jaxgen.metrics.evaluate import class_scores
  # 10 samples over 4 classes: predictions 0 x6, 1 x3, 2 x1, 3 x0; the reference is uniform.
  probs = np.zeros((10, 4))
  probs[np.arange(10), [0] * 6 + [1] * 3 + [2]] = 0.7
  probs[np.arange(10), 3] += 0.3
  ref = np.eye(4)[np.arange(40) % 4]
  s = class_scores(probs, ref, ("a", "b", "c", "d"))
  assert s["classes_covered"] == 3 and s["class_coverage"] == 0.75  # threshold max(1, 0.25)
  assert s["confidence"] == pytest.approx(0.7) and s["reference_confidence"] == 1.0
  q = np.array([0.6, 0.3, 0.1])
  assert s["class_kl"] == pytest.approx(np.sum(q * np.log(q / 0.25)), rel=1e-6)
  assert s["class_histogram"] == {"a": 6, "b": 3, "c": 1, "d": 0}
