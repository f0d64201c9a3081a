"""`jaxgen eval` end to end, the domain classifier, and reference statistics."""

import json

import numpy as np
import pytest

from conftest import REPO, run_cli
from jaxgen import cli
from jaxgen.data import data_config, eval_arrays
from jaxgen.metrics import domain, evaluate, frechet
from jaxgen.metrics.features import extract_all

DIGITS_CONFIG = str(REPO / "experiments" / "ddpm_digits.py")
TOY_CONFIG = str(REPO / "tests" / "configs" / "tiny_toy2d.py")


@pytest.fixture(scope="session")
def digits_network():
  return domain.domain_network(data_config(name="digits"))


def test_domain_classifier_is_accurate_deterministic_and_cached(digits_network, tmp_path):
  _, params, info = domain.load_or_train(data_config(name="digits"))
  assert info["test_accuracy"] > 0.9  # measured 0.956
  # Loaded from the cache: the same bytes the first training wrote.
  _, again, _ = domain.load_or_train(data_config(name="digits"))
  np.testing.assert_array_equal(params["logits"]["kernel"], again["logits"]["kernel"])
  # The features separate real digits from noise: FD(test, train) is far below FD(noise, train).
  train = extract_all(digits_network, eval_arrays(data_config(name="digits", image_size=8, channels=1),
                                                  "train")["image"])["features"]
  test = extract_all(digits_network, eval_arrays(data_config(name="digits", image_size=8, channels=1),
                                                 "test")["image"])["features"]
  noise = np.random.default_rng(0).uniform(-1, 1, (297, 8, 8, 1)).astype(np.float32)
  noise_feats = extract_all(digits_network, noise)["features"]
  stats = lambda f: frechet.FeatureStats(f.shape[1]).update(f)
  fd_test = frechet.frechet_distance_from_stats(stats(test), stats(train)).distance
  fd_noise = frechet.frechet_distance_from_stats(stats(noise_feats), stats(train)).distance
  assert fd_test < 0.1 * fd_noise


def test_eval_on_the_dataset_itself_gives_zero_distance(tmp_path, digits_network):
  real = eval_arrays(data_config(name="digits", image_size=8, channels=1), "train")["image"]
  np.savez(tmp_path / "real.npz", samples=real)
  out = tmp_path / "real.json"
  assert cli.main(["eval", "--config", DIGITS_CONFIG, "--samples", str(tmp_path / "real.npz"),
                   "--metric", "fd,pr", "--json", str(out), "--no-progress"]) == 0
  m = json.loads(out.read_text())["metrics"]
  assert abs(m["fd"]) < 1e-6 * m["fd_trace_term"] + 1e-6
  assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["coverage"] == 1.0
  assert m["class_coverage"] == 1.0


@pytest.mark.slow
def test_eval_digits_checkpoint(reference_run, tmp_path):
  out = tmp_path / "eval.json"
  proc = run_cli(["eval", "--workdir", str(reference_run), "--metric", "fd,kid", "--metric", "pr,bpd",
                  "--num", "40", "--batch", "20", "--json", str(out), "--no-progress"])
  assert "fd " in proc.stdout and "bpd " in proc.stdout  # the readable table
  r = json.loads(out.read_text())
  m = r["metrics"]
  assert r["step"] == 12 and r["num_samples"] == 40 and r["features"] == "domain-digits"
  assert r["reference"]["count"] == 1500 and r["feature_network_info"]["test_accuracy"] > 0.9
  for key in ("fd", "kid", "kid_std", "precision", "recall", "density", "coverage", "bpd",
              "class_coverage", "confidence"):
    assert np.isfinite(m[key]), key
  assert m["fd"] > 0 and 0 <= m["precision"] <= 1 and 0 <= m["class_coverage"] <= 1
  # A bound on the NLL of discrete data is positive (probabilities of bins are at most 1).
  assert m["bpd"] > 0 and m["bpd_num"] == 40
  # Same seed, same samples: a second run (reference statistics now cached) gives the same FD.
  out2 = tmp_path / "eval2.json"
  run_cli(["eval", "--workdir", str(reference_run), "--metric", "fd", "--num", "40", "--batch", "20",
           "--json", str(out2), "--no-progress"])
  r2 = json.loads(out2.read_text())
  assert r2["reference"]["cached"] and r2["metrics"]["fd"] == m["fd"]


@pytest.mark.slow
def test_eval_toy2d_checkpoint(tmp_path):
  workdir = tmp_path / "toy"
  run_cli(["train", "--config", TOY_CONFIG, "--workdir", str(workdir), "--no-progress"])
  out = tmp_path / "toy.json"
  run_cli(["eval", "--workdir", str(workdir), "--metric", "modes,fd,pr", "--num", "500",
           "--batch", "500", "--json", str(out), "--no-progress"])
  r = json.loads(out.read_text())
  m = r["metrics"]
  assert r["features"] == "points" and m["num_modes"] == 8 and m["num_samples"] == 500
  assert sum(m["histogram"]) == round(m["high_quality_percent"] * 5)
  assert 0 <= m["modes_captured"] <= 8 and np.isfinite(m["fd"])


@pytest.mark.parametrize("args, message", [
    (["--metric", "nope"], "Unknown metric 'nope'"),
    (["--metric", "modes"], "needs a Gaussian-mixture dataset"),
    (["--metric", "fd", "--features", "inception"], "FID Inception needs weights"),
])
def test_eval_bad_input_exits_2(tmp_path, capsys, args, message):
  np.savez(tmp_path / "s.npz", samples=np.zeros((4, 8, 8, 1), np.float32))
  code = cli.main(["eval", "--config", DIGITS_CONFIG, "--samples", str(tmp_path / "s.npz"), *args])
  assert code == 2 and message in capsys.readouterr().err


def test_eval_unknown_sampler_exits_2(reference_run, capsys):
  # In-process: the error comes at trace time, before any sampling.
  code = cli.main(["eval", "--workdir", str(reference_run), "--metric", "fd", "--num", "4",
                   "--sampler", "nope", "--no-progress"])
  assert code == 2 and "Sampler 'nope'" in capsys.readouterr().err
  # A GAN's sampling option, given to a diffusion run, is named rather than a TypeError.
  code = cli.main(["eval", "--workdir", str(reference_run), "--metric", "fd", "--num", "4",
                   "--batch-norm", "standing", "--no-progress"])
  assert code == 2 and "--batch-norm: method 'ddpm' samples without this option" in capsys.readouterr().err


def test_eval_samples_file_without_samples_exits_2(tmp_path, capsys):
  np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8, 1), np.float32))
  code = cli.main(["eval", "--config", DIGITS_CONFIG, "--samples", str(tmp_path / "bad.npz"),
                   "--metric", "fd"])
  assert code == 2 and "has no 'samples' array" in capsys.readouterr().err


def test_reference_cache_key_changes_with_the_data():
  a = evaluate.data_fingerprint(data_config(name="digits", image_size=8), "train")
  assert a == evaluate.data_fingerprint(data_config(name="digits", image_size=8), "train")
  assert a != evaluate.data_fingerprint(data_config(name="digits", image_size=16), "train")
  assert a != evaluate.data_fingerprint(data_config(name="digits", image_size=8), "test")
