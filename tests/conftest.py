"""Shared test setup.

The builtin datasets are prepared once per session in a temporary data dir (also used by the
subprocesses the end-to-end tests start). Multi-device tests run in subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=8, because the flag must be set before JAX starts.

The suite runs in parallel workers (pytest-xdist, `-n 2`): the data dir and the cache are made once
by the controlling process, whose environment the workers inherit, and shared (dataset preparation
and the domain classifier's training take file locks); the trained runs that several test files use
are built once under a lock too. Each worker keeps its own XLA compilation cache: JAX writes cache
entries in place, so a shared one could be read half-written.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

_DATA_DIR = os.environ.get("JAXGEN_TEST_DATA_DIR") or tempfile.mkdtemp(prefix="jaxgen-test-data-")
os.environ["JAXGEN_DATA_DIR"] = os.environ["JAXGEN_TEST_DATA_DIR"] = _DATA_DIR
# Feature networks and reference statistics are cached per session (trained/computed once).
_CACHE_DIR = os.environ.get("JAXGEN_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="jaxgen-test-cache-")
os.environ["JAXGEN_CACHE_DIR"] = os.environ["JAXGEN_TEST_CACHE_DIR"] = _CACHE_DIR

# One persistent XLA compilation cache for the session, shared by this process and every subprocess
# the end-to-end tests start: the same tiny train step is compiled by a dozen `jaxgen train` runs,
# and a cache hit turns each 25 s compile into a load (a run went from 39 s to 11 s, bitwise the
# same losses). Set before JAX is imported anywhere.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(_CACHE_DIR, f"xla-{_WORKER}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# LLVM's optimisation level 1 (of 3) for XLA:CPU's own kernels: the tests' programs are tiny and
# compiled once each, so compilation dominates (a DCGAN shape test: 20.5 s at the default level,
# 12.7 s at 1; the whole suite fits its 15 minutes on a 2-core machine that took 1002 s at the
# default). Products and convolutions run in the prebuilt libraries either way. Level 0 compiles
# faster still (9.3 s) but the tiny GAN's loss became NaN at step 2 under it, so it is not used.
# Every process of the suite (subprocesses included) uses the same level, so the bitwise
# comparisons between runs compare like with like.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=1"
if FAST_COMPILE_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

# The suite's costliest files, costliest first (seconds per file on 2 cores, stop 44: gan 346,
# reliability 281, eval 145, sweep 142, ddpm_method 127, samplers 100, flow 93, nn 69,
# consistency 64; the rest under 35 each). xdist's loadfile hands each worker whole files in
# collection order, and by default reorders them by their number of tests: that put
# test_reliability (7 tests, 281 s) last, on one worker, while the other sat idle (simulated from
# the per-test times: 591 s vs 870 s; measured wall 880 s). Scheduling the long files first lets the
# short ones fill the gaps (simulated 734 s vs 728 s; measured wall 761 s); pyproject.toml turns
# xdist's reordering off.
COSTLIEST_FIRST = ("test_gan.py", "test_reliability.py", "test_eval.py", "test_sweep.py",
                   "test_ddpm_method.py", "test_samplers.py", "test_flow.py", "test_nn.py",
                   "test_consistency.py")


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(COSTLIEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_ddpm.py")


def subprocess_env(devices: int = 1) -> dict:
  """The environment for a subprocess that starts JAX with `devices` virtual CPU devices and this
  session's data dir and cache."""
  env = dict(os.environ, JAXGEN_DATA_DIR=_DATA_DIR, JAXGEN_CACHE_DIR=_CACHE_DIR, PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE_FLAGS}")
  env.pop("JAX_NUM_CPU_DEVICES", None)
  return env


def run_cli(args, *, devices: int = 1, env=None, timeout=300, check=True):
  """Runs `python -m jaxgen ARGS` in a subprocess; returns the CompletedProcess."""
  full_env = subprocess_env(devices) | (env or {})
  proc = subprocess.run([sys.executable, "-m", "jaxgen", *args], capture_output=True, text=True,
                        env=full_env, timeout=timeout, cwd=REPO)
  if check and proc.returncode != 0:
    raise AssertionError(f"jaxgen {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}")
  return proc


def losses(workdir) -> dict[int, float]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="session")
def data_dir():
  return pathlib.Path(_DATA_DIR)


def built_once(tmp_path_factory, name: str, build) -> pathlib.Path:
  """The directory NAME made by build(path) once per test session, shared by the xdist workers
  (the first one builds it under a lock; a build that failed is redone by the next)."""
  if _WORKER == "main":  # not under xdist
    path = tmp_path_factory.mktemp(name)
    build(path)
    return path
  from jaxgen.locks import file_lock
  root = tmp_path_factory.getbasetemp().parent  # this session's, common to its workers
  path = root / f"shared-{name}"
  with file_lock(root / f"shared-{name}.lock"):
    if not (root / f"shared-{name}.done").exists():
      shutil.rmtree(path, ignore_errors=True)
      path.mkdir()
      build(path)
      (root / f"shared-{name}.done").touch()
  return path


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
  """The tiny DDPM trained uninterrupted for 12 steps on 1 device: the baseline of several tests.
  Shared: tests copy it before changing anything in it."""
  return built_once(tmp_path_factory, "reference", lambda workdir: run_cli(
      ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress"]))


@pytest.fixture(scope="session")
def tiny_flow_run(tmp_path_factory):
  """A tiny rectified flow on the 2D ring, trained once per session (reflow source, CD teacher)."""
  return built_once(tmp_path_factory, "flow", lambda root: run_cli(
      ["train", "--config", str(REPO / "tests" / "configs" / "tiny_flow.py"), "--workdir",
       str(root / "rf1"), "--no-progress"])) / "rf1"
