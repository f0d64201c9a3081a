"""Seed sweeps (jaxgen.train.sweep): each seed starts where `jaxgen train --config.seed=k` starts and
advances by the engine's own update on the batches the documented draw selects, whatever else is
in the sweep."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import subprocess_env
from jaxgen.config import load_config_file
from jaxgen.train.loop import Trainer
from jaxgen.train.sweep import DATA_SALT, SeedSweep, seed_devices

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config():
  c = load_config_file(REPO / "tests" / "configs" / "tiny_gan.py")
  c.train.steps = 6
  c.train.steps_per_call = 3
  c.train.log_every = 3
  c.train.checkpoint_every = 6
  # Without the generator's BatchNorm: the MLP generator's Dense biases before BN get a gradient
  # that is 0 up to rounding, which Adam scales to +-lr steps, so those leaves cannot be compared
  # between two evaluation orders (the rest of the batch-coupled parts stay on).
  c.model.g_norm = "none"
  c.gan.unrolled_steps = 0  # compile time; unrolling is per seed like every other part
  return c


@pytest.fixture(scope="module")
def sweep(config):
  """Seeds 4 and 7 for 6 steps, measured every 2; the fresh states are kept as `initial`."""
  s = SeedSweep(config, [4, 7])
  s.initial = jax.tree.map(jnp.copy, s.states)  # run() donates the states' buffers
  s.seen = []
  s.run(every=2, callback=lambda step, states, metrics: s.seen.append(
      (step, np.asarray(states.step).tolist(), metrics["d_loss"].shape)))
  return s


def _leaves_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_each_seed_starts_from_the_trainers_state(config, sweep, tmp_path):
  for i, seed in enumerate((4, 7)):
    c = config.copy_and_resolve_references()
    c.seed = seed
    expected = Trainer(c, tmp_path).init_state()
    _leaves_close(jax.tree.map(lambda x: x[i], sweep.initial), expected, rtol=0, atol=0)


def test_a_seed_advances_by_the_engine_update_on_the_drawn_batches(config, sweep):
  """Seed 7 stepped by hand (Trainer.update on rows drawn from fold_in(fold_in(key, salt), step))
  equals seed 7 inside the two-seed sweep: the vmap neither mixes seeds nor changes the update."""
  trainer = sweep.trainer
  points = sweep.data["point"]
  state = jax.tree.map(lambda x: x[1], sweep.initial)
  update = jax.jit(trainer.update)
  for _ in range(config.train.steps):
    key = jax.random.fold_in(jax.random.fold_in(state.key, DATA_SALT), state.step)
    rows = jax.random.randint(key, (config.train.batch_size,), 0, len(points))
    state, _ = update(state, {"point": points[rows]})
  assert int(sweep.seed_view(1).step) == config.train.steps
  _leaves_close(sweep.seed_view(1), state, rtol=2e-4, atol=1e-6)
  # The seeds did not train identically (independent inits, keys and batches).
  a, b = (jax.tree.leaves(sweep.seed_view(i).params)[0] for i in (0, 1))
  assert not np.allclose(np.asarray(a), np.asarray(b))


def test_the_callback_sees_every_interval(sweep):
  # Steps 2, 4, 6 (the end), both seeds there, with the last call's metrics per seed and step.
  assert sweep.seen == [(2, [2, 2], (2, 2)), (4, [4, 4], (2, 2)), (6, [6, 6], (2, 2))]


def test_the_trainer_without_a_workdir_does_not_run(config):
  with pytest.raises(ValueError, match="workdir"):
    Trainer(config, None).run()


def test_a_sweep_resumed_from_its_checkpoint_continues_the_uninterrupted_one(config, sweep, tmp_path):
  """Seeds 4 and 7 trained for 4 steps, checkpointed, then taken on to step 6 by a new sweep on
  the same workdir (its config longer: train.steps may differ) end where the uninterrupted 6-step
  sweep ends."""
  first = SeedSweep(config, [4, 7], workdir=tmp_path)
  first.run(4, checkpoint_every=2)
  first.close()
  assert first.checkpointer.all_steps() == [4]  # max_to_keep 1: the latest only
  longer = config.copy_and_resolve_references()
  longer.train.steps = 12
  second = SeedSweep(longer, [4, 7], workdir=tmp_path)
  assert second.step().tolist() == [4, 4]
  second.run(6, every=2)
  second.close()
  _leaves_close(second.states, sweep.states, rtol=0, atol=0)
  assert second.checkpointer.all_steps() == [6]


def test_a_sweep_checkpoint_refuses_other_seeds_or_another_config(config, tmp_path):
  from jaxgen.errors import CheckpointError
  s = SeedSweep(config, [1, 2], workdir=tmp_path)
  s.save()
  s.close()
  with pytest.raises(CheckpointError, match=r"seeds \[1, 2\], not \[1\]"):
    SeedSweep(config, [1], workdir=tmp_path)
  other = config.copy_and_resolve_references()
  other.d_optimizer.b1 = 0.8
  with pytest.raises(CheckpointError, match=r"another config \(differs in d_optimizer\.b1\)"):
    SeedSweep(other, [1, 2], workdir=tmp_path)


def _cooldown(config, steps: int, decay_steps: int):
  """The config with both players' rates held, then decayed linearly to 0 over the last steps."""
  c = config.copy_and_resolve_references()
  c.train.steps = steps
  for section in (c.optimizer, c.d_optimizer):
    section.schedule, section.final_lr_frac, section.decay_steps = "linear", 0.0, decay_steps
  return c


def test_a_cooldown_branches_from_a_constant_rate_checkpoint(config, sweep, tmp_path):
  """A constant-rate sweep checkpointed at step 4 continues under rates that decay to 0 over steps
  4-6: it ends where the same cooldown run from scratch ends (the schedules agree on the steps
  taken), not where the constant-rate run ends. Lengthening the cooldown run afterwards would move
  its decay onto steps already taken, and is refused naming the first such step."""
  # Two steps per call throughout: the constant-rate program is the `sweep` fixture's, and the
  # cooldown's is compiled once for both cooldown runs (each program is a compile of several seconds).
  first = SeedSweep(config, [4, 7], workdir=tmp_path)
  first.run(4, checkpoint_every=4, steps_per_call=2)
  first.close()
  cool = _cooldown(config, 6, 2)
  branched = SeedSweep(cool, [4, 7], workdir=tmp_path)
  assert branched.step().tolist() == [4, 4]
  branched.run(6, steps_per_call=2)
  branched.close()
  whole = SeedSweep(cool, [4, 7])
  whole.run(6, steps_per_call=2)
  _leaves_close(branched.states, whole.states, rtol=0, atol=0)
  # Only the last update differs (rate lr / 2 at step 5), enough to move the weights.
  moved = [not np.allclose(a, b, rtol=1e-6, atol=0) for a, b in
           zip(jax.tree.leaves(branched.states.params), jax.tree.leaves(sweep.states.params))]
  assert any(moved)
  from jaxgen.errors import CheckpointError
  with pytest.raises(CheckpointError, match=r"'optimizer' learning rate differs .* at step 5 .*"
                                            r"decay_steps' <= train.steps - 6"):
    SeedSweep(_cooldown(config, 12, 2), [4, 7], workdir=tmp_path)


def test_seed_devices_take_whole_seeds_evenly():
  devices = list("abcdefgh")  # stand-ins: only their order matters
  assert seed_devices(8, devices) == devices
  assert seed_devices(5, devices) == list("abcde")
  assert seed_devices(16, devices) == devices  # two seeds each
  assert seed_devices(6, devices[:4]) == list("abc")
  assert seed_devices(7, devices[:4]) == ["a"]


_MULTI_DEVICE = """
import json, pathlib, sys
import jax, numpy as np
from jaxgen.config import load_config_file
from jaxgen.train.sweep import SeedSweep
config = load_config_file(sys.argv[1])
# Two steps per call: one program per device count (the resumed run reuses the first's).
config.train.steps, config.train.steps_per_call, config.train.log_every, config.train.checkpoint_every = 6, 2, 2, 6
config.model.g_norm, config.gan.unrolled_steps = "none", 0
seeds, workdir = [4, 7, 9, 11], pathlib.Path(sys.argv[2])
one = SeedSweep(config, seeds, devices=jax.devices()[:1])
one.run(6)
split = SeedSweep(config, seeds, workdir=workdir)  # 8 devices offered: 4 used, a seed on each
split.run(4, checkpoint_every=4)
leaf = jax.tree.leaves(split.states.params)[0]
layout = [len(jax.devices()), split.mesh.size, len(leaf.sharding.device_set),
          sorted(sh.data.shape[0] for sh in leaf.addressable_shards)]
split.close()
resumed = SeedSweep(config, seeds, devices=jax.devices()[:1], workdir=workdir)
resumed_at = int(resumed.step()[0])
resumed.run(6)
gap = 0.0
for a, b in zip(jax.tree.leaves(one.states), jax.tree.leaves(resumed.states), strict=True):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  gap = max(gap, float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3))) if a.size else 0.0)
print(json.dumps({"layout": layout, "resumed_at": resumed_at, "max_rel_gap": gap}))
"""


def test_seeds_split_over_devices_train_as_on_one(tmp_path):
  """8 virtual devices: 4 seeds split one per device for 4 steps, checkpointed, then continued on
  a single device to step 6, end where the 4 seeds trained on one device throughout end."""
  import json
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", _MULTI_DEVICE, str(REPO / "tests" / "configs" / "tiny_gan.py"),
                         str(tmp_path / "sweep")], capture_output=True, text=True,
                        env=subprocess_env(devices=8), timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["layout"] == [8, 4, 4, [1, 1, 1, 1]]
  assert out["resumed_at"] == 4
  assert out["max_rel_gap"] < 2e-4


_CPU_DEVICES = """
import json, sys
sys.path.insert(0, sys.argv[1])
import gan_mode_collapse as driver
driver.use_cpu_devices(3)
import jax
count = len(jax.devices())
driver.use_cpu_devices(3)  # JAX started with that count already: nothing to do
code = driver.main(["--root", sys.argv[2], "--report-only", "--cpu-devices", "5",
                    "--cpu-library-fusions", "default"])
print(json.dumps({"count": count, "exit": code}))
"""


_LIBRARY_FUSIONS = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import gan_mode_collapse as driver
driver.use_cpu_library_fusions("none")
driver.use_cpu_library_fusions("none")  # the flag is there already: added once
flags = os.environ["XLA_FLAGS"]
import jax, jax.numpy as jnp
maxout = jax.jit(lambda a, b: jnp.max((a @ b).reshape(64, 16, 4), axis=-1))
hlo = maxout.lower(jnp.ones((64, 32)), jnp.ones((32, 64))).compile().as_text()
ok = driver.main(["--root", sys.argv[2], "--report-only"])  # JAX started with the flag: fine
os.environ["XLA_FLAGS"] = flags.replace(driver.YNN_FUSION_FLAG + "=", "")
late = driver.main(["--root", sys.argv[2], "--report-only"])  # started without it: refused
print(json.dumps({"flags": flags, "ynn_in_hlo": "ynn" in hlo.lower(), "ok": ok, "late": late}))
"""


def test_mode_collapse_driver_turns_off_the_cpu_library_fusions(tmp_path):
  """--cpu-library-fusions none (the driver's default) adds XLA:CPU's YNNPACK fusion flag with an
  empty list to XLA_FLAGS once, beside the flags already there; XLA accepts it and the compiled
  program has no YNNPACK fusion. Once JAX has started without it, the driver exits 2 with the reason."""
  import json
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", _LIBRARY_FUSIONS, str(REPO / "experiments"), str(tmp_path)],
                        capture_output=True, text=True, env=subprocess_env(devices=2), timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["flags"].startswith("--xla_force_host_platform_device_count=2")
  assert out["flags"].count("--xla_cpu_experimental_ynn_fusion_type=") == 1
  assert out["flags"].endswith("--xla_cpu_experimental_ynn_fusion_type=")
  assert (out["ynn_in_hlo"], out["ok"], out["late"]) == (False, 0, 2)
  assert "--cpu-library-fusions none: JAX started its backend before" in proc.stderr


def test_mode_collapse_driver_splits_the_cpu_into_devices(tmp_path):
  """--cpu-devices N gives JAX N CPU devices, over an XLA_FLAGS count set before; asked again once
  JAX has started with another count, the driver exits 2 with the reason."""
  import json
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", _CPU_DEVICES, str(REPO / "experiments"), str(tmp_path)],
                        capture_output=True, text=True, env=subprocess_env(devices=8), timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"count": 3, "exit": 2}
  assert "--cpu-devices 5: JAX started before with 3 CPU devices" in proc.stderr
