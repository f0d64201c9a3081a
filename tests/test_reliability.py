"""End-to-end reliability of `jaxgen train`: determinism, resume after kill, device-count
invariance, preemption, non-finite losses, and clear errors for bad input. The tests drive the real
CLI on the tiny DDPM config in subprocesses, but for the bad-input refusals after the first: those
go through the CLI's own `main` in this process, since a subprocess would spend most of its 4-5 s
importing JAX. (Runs that compile stay in subprocesses: they share the subprocesses' compilation
cache, which this process's other XLA flags would miss.)"""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY, losses, run_cli, subprocess_env

pytestmark = pytest.mark.slow
LONG = ["--config.train.steps=60", "--config.train.checkpoint_every=10"]


def train_args(workdir, *extra):
  return ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress", *extra]


def popen_train(workdir, *extra, devices=1):
  return subprocess.Popen([sys.executable, "-m", "jaxgen", *train_args(workdir, *extra)], cwd=REPO,
                          env=subprocess_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("long_reference")
  run_cli(train_args(workdir, *LONG))
  return losses(workdir)


def test_same_seed_twice_gives_bitwise_identical_losses(reference_run, tmp_path):
  run_cli(train_args(tmp_path))
  assert losses(tmp_path) == losses(reference_run)  # exact float equality
  assert sorted(losses(tmp_path)) == list(range(2, 13, 2))


@pytest.mark.long
def test_eight_devices_match_one_device(reference_run, tmp_path):
  run_cli(train_args(tmp_path), devices=8)
  ref, got = losses(reference_run), losses(tmp_path)
  assert ref.keys() == got.keys()
  np.testing.assert_allclose([got[s] for s in sorted(got)], [ref[s] for s in sorted(ref)], rtol=1e-5)


def _wait_for(predicate, proc, timeout=240):
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.002)
  return False


def test_sigkill_mid_run_and_mid_checkpoint_then_resume_matches_uninterrupted(long_reference, tmp_path):
  ckpt_dir = tmp_path / "checkpoints"
  # First kill: the moment a checkpoint is being written (orbax's temporary directory exists).
  proc = popen_train(tmp_path, *LONG)
  saw_tmp = _wait_for(lambda: ckpt_dir.is_dir() and any("tmp" in p.name for p in ckpt_dir.iterdir()), proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  # Second kill: mid-run, after a few more steps.
  proc = popen_train(tmp_path, *LONG)
  start_len = len(losses(tmp_path)) if (tmp_path / "metrics.jsonl").exists() else 0
  _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and len(losses(tmp_path)) >= start_len + 8, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  run_cli(train_args(tmp_path, *LONG))
  got = losses(tmp_path)
  assert got == long_reference, f"resumed losses differ (saw a checkpoint being written: {saw_tmp})"


def test_sigterm_saves_and_rerun_resumes(long_reference, tmp_path):
  proc = popen_train(tmp_path, *LONG)
  _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and max(losses(tmp_path), default=0) >= 14, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert "Stopped by a signal at step" in err
  stopped_at = int(err.split("Stopped by a signal at step ")[1].split(";")[0])
  assert stopped_at < 60
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == stopped_at  # saved at the step it stopped, not only at checkpoint_every
  out = run_cli(train_args(tmp_path, *LONG))
  assert f"started at {stopped_at}" in out.stdout
  assert losses(tmp_path) == long_reference


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(reference_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference_run, workdir)
  proc = run_cli(train_args(workdir, "--config.train.steps=24", "--config.optimizer.lr=1e30",
                            "--allow-config-change"), check=False)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert "at step 14" in proc.stderr and "last good checkpoint (step 12) is kept" in proc.stderr
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == 12


def jaxgen_in_process(args, capsys) -> subprocess.CompletedProcess:
  """`jaxgen ARGS` through `jaxgen.cli.main`, what `python -m jaxgen` runs: its exit code and
  output. An exception main lets through fails the test, as a traceback would."""
  from jaxgen import cli
  capsys.readouterr()
  code = cli.main([str(a) for a in args])
  out, err = capsys.readouterr()
  return subprocess.CompletedProcess(args, code, out, err)


def _expect_user_error(proc, *fragments):
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for fragment in fragments:
    assert fragment in proc.stderr, proc.stderr[-3000:]


def test_bad_inputs_exit_2_with_a_clear_message(reference_run, tmp_path, capsys, monkeypatch):
  _expect_user_error(run_cli(train_args(tmp_path / "a", "--config.train.batchsize=8"), check=False),
                     "Unknown config key 'train.batchsize'")
  # The same refusals and more, through the same main in this process.
  _expect_user_error(jaxgen_in_process(train_args(tmp_path / "b", "--config.train.grad_accum_steps=3"),
                                       capsys),
                     "'train.grad_accum_steps' (3) must divide train.batch_size (16)")
  with monkeypatch.context() as env:
    env.setenv("JAXGEN_DATA_DIR", str(tmp_path / "nodata"))
    _expect_user_error(jaxgen_in_process(train_args(tmp_path / "c", "--config.data.name=tfds",
                                                    "--config.data.tfds_name=mnist"), capsys),
                       "'mnist' is not prepared", "download_and_prepare")
  (tmp_path / "empty").mkdir()
  _expect_user_error(jaxgen_in_process(train_args(tmp_path / "d", "--config.data.name=folder",
                                                  f"--config.data.path={tmp_path / 'empty'}"), capsys),
                     "holds no PNG or JPEG")
  _expect_user_error(jaxgen_in_process(["sample", "--workdir", tmp_path / "nothing"], capsys),
                     "has no checkpoints")
  # A sampling option the run's method does not take (StyleGAN's truncation on a DDPM run).
  _expect_user_error(jaxgen_in_process(["sample", "--workdir", reference_run, "--num", "4", "--truncation",
                                        "0.5", "--out", tmp_path / "t.png"], capsys),
                     "--truncation: method 'ddpm' samples without this option", "--sampler")
  # A checkpoint of another model size: the mismatched entries are named.
  mismatch = tmp_path / "mismatch"
  shutil.copytree(reference_run, mismatch)
  _expect_user_error(jaxgen_in_process(train_args(mismatch, "--config.model.ch=16"), capsys),
                     "was trained with another config (differs in model.ch)", "--allow-config-change")
  _expect_user_error(jaxgen_in_process(train_args(mismatch, "--config.model.ch=16", "--allow-config-change"),
                                       capsys),
                     "does not fit the config", "params/conv_in/kernel: checkpoint (3, 3, 1, 8) vs config (3, 3, 1, 16)")
  # A corrupt checkpoint directory.
  corrupt = tmp_path / "corrupt"
  shutil.copytree(reference_run, corrupt)
  for f in (corrupt / "checkpoints" / "12" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  _expect_user_error(jaxgen_in_process(train_args(corrupt), capsys),
                     "checkpoint at step 12", "cannot be read")


def test_continuing_under_another_config_is_refused_unless_allowed(reference_run, tmp_path):
  """A run is what its config describes: resuming under another one is refused before anything in
  the workdir changes, but for keys the states do not depend on; --allow-config-change overrides."""
  workdir = tmp_path / "run"
  shutil.copytree(reference_run, workdir)
  config_before = (workdir / "config.json").read_text()
  checkpoints_before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  _expect_user_error(run_cli(train_args(workdir, "--config.optimizer.b1=0.5"), check=False),
                     "was trained with another config (differs in optimizer.b1)", "--allow-config-change")
  # A longer run stretches the cosine decay (warmup 2 of 12 steps) over steps already taken: the
  # rates agree at steps 0-2 (warmup, then the decay's start) and first differ at step 3.
  _expect_user_error(run_cli(train_args(workdir, "--config.train.steps=24"), check=False),
                     "is at step 12, but this config's 'optimizer' learning rate differs from the one "
                     "it was trained with at step 3", "--allow-config-change")
  assert (workdir / "config.json").read_text() == config_before
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == checkpoints_before
  # Logging cadence and sampling settings do not change the states.
  out = run_cli(train_args(workdir, "--config.train.log_every=4", "--config.sample.steps=7"))
  assert "Trained to step 12 (started at 12)" in out.stdout
  out = run_cli(train_args(workdir, "--config.train.steps=14", "--config.optimizer.b1=0.5",
                           "--allow-config-change"))
  assert "under a changed config (--allow-config-change): optimizer.b1." in out.stderr
  assert "Trained to step 14 (started at 12)" in out.stdout
  assert json.loads((workdir / "config.json").read_text())["optimizer"]["b1"] == 0.5


def test_sample_is_deterministic_for_a_seed(reference_run, tmp_path):
  """Same seed, same samples, whether or not the trajectory is also written (an animated GIF with a
  frame every 2 of 10 steps, noise and sample included, and the PNG strip beside it)."""
  outs = {}
  common = ["sample", "--workdir", str(reference_run), "--num", "4", "--sampler", "dpmpp_2m",
            "--steps", "10"]
  for name, seed, extra in (("a", 1, []), ("c", 2, []),
                            ("b", 1, ["--trajectory", str(tmp_path / "traj.gif"), "--trajectory-frames", "5"])):
    run_cli(common + ["--seed", str(seed), "--out", str(tmp_path / f"{name}.png"),
                      "--npz", str(tmp_path / f"{name}.npz"), *extra])
    outs[name] = np.load(tmp_path / f"{name}.npz")["samples"]
  assert outs["a"].shape == (4, 8, 8, 1)
  np.testing.assert_array_equal(outs["a"], outs["b"])
  assert not np.allclose(outs["a"], outs["c"])
  assert (tmp_path / "a.png").stat().st_size > 0
  from PIL import Image
  with Image.open(tmp_path / "traj.gif") as gif:
    assert gif.n_frames == 6
  assert (tmp_path / "traj.png").stat().st_size > 0


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.long
def test_two_processes_match_one_process(reference_run, tmp_path):
  port = _free_port()
  env = subprocess_env(devices=1)
  procs = [subprocess.Popen(
      [sys.executable, "-m", "jaxgen", *train_args(tmp_path, "--coordinator", f"127.0.0.1:{port}",
                                                   "--num-processes", "2", "--process-id", str(i))],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    results = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, results):
    assert p.returncode == 0, err[-3000:]
  ref, got = losses(reference_run), losses(tmp_path)
  assert ref.keys() == got.keys()
  np.testing.assert_allclose([got[s] for s in sorted(got)], [ref[s] for s in sorted(ref)], rtol=1e-5)
