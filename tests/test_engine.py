"""The step builder against hand-computed truths, on a linear-regression loss (fast to compile)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxgen.method import pure_loss
from jaxgen.train import step as step_lib
from jaxgen.train.optim import make_lr_schedule, make_optimizer
from jaxgen.train.state import create_train_state


def mse(params, batch, key):
  pred = batch["x"] @ params["w"]
  return jnp.mean((pred - batch["y"]) ** 2), {"pred_mean": jnp.mean(pred)}


def batch_of(n, seed=0):
  rng = np.random.default_rng(seed)
  return {"x": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
          "y": jnp.asarray(rng.normal(size=(n,)), jnp.float32)}


def run(update, state, batches):
  mesh = step_lib.make_mesh()
  compiled = step_lib.compile_train_step(update, mesh, state, batches, donate=False)
  return compiled(state, batches)


def initial_state(opt):
  return create_train_state({"params": {"w": jnp.array([0.5, -1.0, 2.0])}}, opt, jax.random.PRNGKey(0))


def test_sgd_step_matches_the_hand_computed_update_and_ema():
  opt = optax.sgd(0.1)
  state = initial_state(opt)
  batch = batch_of(8)
  update = step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(0.1), ema_decay=0.9)
  new, metrics = run(update, state, jax.tree.map(lambda x: x[None], batch))
  x, y, w = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64), np.array([0.5, -1.0, 2.0])
  grad = 2 * x.T @ (x @ w - y) / len(y)
  np.testing.assert_allclose(new.params["w"], w - 0.1 * grad, rtol=1e-5)
  np.testing.assert_allclose(new.ema_params["w"], 0.9 * w + 0.1 * (w - 0.1 * grad), rtol=1e-5)
  assert float(metrics["loss"][0]) == pytest.approx(np.mean((x @ w - y) ** 2), rel=1e-5)
  assert float(metrics["grad_norm"][0]) == pytest.approx(np.linalg.norm(grad), rel=1e-5)
  assert int(new.step) == 1


def test_ema_warmup_follows_min_decay_one_plus_n_over_ten_plus_n():
  """With train.ema_warmup the EMA after steps 0, 1, 2 uses decays min(0.9, (1 + n) / (10 + n)) =
  0.1, 2/11, 0.25 (by hand on the parameter trajectory), without it 0.9 throughout."""
  opt = optax.sgd(0.1)
  state = initial_state(opt)
  batches = {k: jnp.stack([batch_of(8, seed=s)[k] for s in range(3)]) for k in ("x", "y")}
  warm, _ = run(step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(0.1), ema_decay=0.9,
                                      ema_warmup=True), state, batches)
  plain, _ = run(step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(0.1), ema_decay=0.9),
                 state, batches)
  w = np.array([0.5, -1.0, 2.0])
  ema_warm, ema_plain = w.copy(), w.copy()
  for s, decay in enumerate([0.1, 2 / 11, 3 / 12]):
    x, y = np.asarray(batches["x"][s], np.float64), np.asarray(batches["y"][s], np.float64)
    w = w - 0.1 * 2 * x.T @ (x @ w - y) / len(y)
    ema_warm = decay * ema_warm + (1 - decay) * w
    ema_plain = 0.9 * ema_plain + 0.1 * w
  np.testing.assert_allclose(warm.params["w"], w, rtol=1e-5)
  np.testing.assert_allclose(warm.ema_params["w"], ema_warm, rtol=1e-5)
  np.testing.assert_allclose(plain.ema_params["w"], ema_plain, rtol=1e-5)
  assert float(step_lib.ema_decay_at(10_000, 0.999, True)) == pytest.approx(0.999)


def test_gradient_accumulation_equals_the_full_batch():
  opt = optax.adam(1e-2)
  state = initial_state(opt)
  batch = jax.tree.map(lambda x: x[None], batch_of(16))
  full = run(step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(1e-2)), state, batch)
  accum = run(step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(1e-2), grad_accum_steps=4),
              state, batch)
  np.testing.assert_allclose(accum[0].params["w"], full[0].params["w"], rtol=1e-5)
  np.testing.assert_allclose(accum[1]["loss"], full[1]["loss"], rtol=1e-5)
  np.testing.assert_allclose(accum[1]["pred_mean"], full[1]["pred_mean"], rtol=1e-5, atol=1e-6)


def test_several_steps_per_call_equal_single_steps():
  opt = optax.adam(1e-2)
  state = initial_state(opt)
  batches = {k: jnp.stack([batch_of(8, seed=s)[k] for s in range(3)]) for k in ("x", "y")}
  update = step_lib.build_update(pure_loss(mse), opt, optax.constant_schedule(1e-2), ema_decay=0.5)
  together, metrics = run(update, state, batches)
  one = state
  for s in range(3):
    one, m = run(update, one, jax.tree.map(lambda x: x[s:s + 1], batches))
    np.testing.assert_allclose(m["loss"][0], metrics["loss"][s], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), together, one)


def test_warmup_then_cosine_schedule_values():
  opt = ml_collections.ConfigDict(dict(lr=1.0, warmup_steps=10, schedule="cosine", final_lr_frac=0.0))
  sched = make_lr_schedule(opt, total_steps=110)
  assert float(sched(0)) == 0.0 and float(sched(5)) == pytest.approx(0.5)
  assert float(sched(10)) == pytest.approx(1.0)
  assert float(sched(60)) == pytest.approx(0.5, abs=1e-6)  # half-way through the cosine
  assert float(sched(110)) == pytest.approx(0.0, abs=1e-6)
  tx, _ = make_optimizer(ml_collections.ConfigDict(dict(lr=1e-3, grad_clip=1.0)), 10)
  huge = {"w": jnp.full((4,), 1e6)}
  updates, _ = tx.update(huge, tx.init(huge), huge)
  assert np.all(np.isfinite(np.asarray(updates["w"])))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_a_decay_over_the_last_steps_holds_the_rate_until_it_starts(kind):
  """Warmup 10, then lr 1 held until step 80, then decay to 0.1 over the last 20 of 100 steps: the
  rate half-way through the decay is 0.55 for both shapes (linear: 1 - 0.45; cosine: 0.1 + 0.9 *
  (1 + cos(pi / 2)) / 2), and the rate before step 80 is exactly the constant schedule's."""
  opt = ml_collections.ConfigDict(dict(lr=1.0, warmup_steps=10, schedule=kind, final_lr_frac=0.1,
                                       decay_steps=20))
  sched = make_lr_schedule(opt, total_steps=100)
  constant = make_lr_schedule(ml_collections.ConfigDict(dict(lr=1.0, warmup_steps=10)), 100)
  steps = jnp.arange(81)
  np.testing.assert_array_equal(np.asarray(sched(steps)), np.asarray(constant(steps)))
  assert float(sched(5)) == pytest.approx(0.5) and float(sched(79)) == 1.0
  assert float(sched(90)) == pytest.approx(0.55, abs=1e-6)
  assert float(sched(100)) == pytest.approx(0.1, abs=1e-6)
  quarter = 1 - 0.9 * 0.25 if kind == "linear" else 0.1 + 0.9 * (1 + np.cos(np.pi / 4)) / 2
  assert float(sched(85)) == pytest.approx(quarter, abs=1e-6)


def test_a_decay_longer_than_the_run_is_a_config_error():
  from jaxgen.errors import ConfigError
  opt = ml_collections.ConfigDict(dict(lr=1.0, warmup_steps=10, schedule="linear", decay_steps=95))
  with pytest.raises(ConfigError, match=r"optimizer.decay_steps.*between 0 and .*\(90\)"):
    make_lr_schedule(opt, total_steps=100)


def test_a_player_with_several_updates_per_step_takes_each_steps_rate():
  """A critic updating 3 times per step under a linear decay over 4 steps (lr 1 -> 0): with SGD
  and a unit gradient its updates are -lr at the rate of the step they belong to, 1, 1, 1, then
  0.75 x3, 0.5 x3, 0.25 x3 (by hand), not the per-update decay 1, 0.75, 0.5, 0.25, 0, ..."""
  opt = ml_collections.ConfigDict(dict(name="sgd", momentum=0.0, lr=1.0, schedule="linear",
                                       final_lr_frac=0.0))
  tx, per_step = make_optimizer(opt, 4, updates_per_step=3)
  grad = {"w": jnp.ones(())}
  state, taken = tx.init(grad), []
  for _ in range(12):
    update, state = tx.update(grad, state)
    taken.append(float(update["w"]))
  np.testing.assert_allclose(taken, -np.repeat([1.0, 0.75, 0.5, 0.25], 3), rtol=1e-6)
  assert float(per_step(2)) == pytest.approx(0.5)  # the schedule returned is over steps


def test_step_keys_depend_on_the_step_not_the_call_history():
  """A loss that returns its random draw: the draw at step s is fold_in(run_key, s)."""
  def draw(params, batch, key):
    return jnp.sum(params["w"]) * 0 + jax.random.uniform(key), {}
  opt = optax.sgd(0.0)
  state = initial_state(opt)
  batches = jax.tree.map(lambda x: jnp.stack([x] * 4), batch_of(4))
  _, m = run(step_lib.build_update(pure_loss(draw), opt, optax.constant_schedule(0.0)), state, batches)
  expected = [jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(0), s)) for s in range(4)]
  np.testing.assert_allclose(m["loss"], expected, rtol=1e-6)
