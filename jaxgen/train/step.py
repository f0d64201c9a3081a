"""The step builder: a pure loss -> a jitted, data-parallel update of the train state.

Parallelism is `jax.jit` over a 1-D `Mesh` with axis `data`: the state is replicated, batches are
split along their batch dimension, and XLA inserts the gradient all-reduce. The same code runs on 1
device, 8 virtual CPU devices or several processes.

Keys: step s uses fold_in(state.key, s) (and fold_in(that, i) for micro-batch i), and every draw
inside a loss has the shape of the whole (micro-)batch, so the numbers drawn do not depend on the
device count, and a resumed run draws what an uninterrupted run would.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.train.state import TrainState

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, stacked: bool = True) -> NamedSharding:
  """Batches arrive as (steps_per_call, batch, ...): split the batch dimension over `data`."""
  return NamedSharding(mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))


def ema_update(ema, params, decay):
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def ema_decay_at(step, decay: float, warmup: bool):
  """The EMA's decay for the update from state step `step` (0-based). With warm-up, min(decay,
  (1 + step) / (10 + step)) (the num_updates rule of TensorFlow's ExponentialMovingAverage): the
  average forgets its initial weights within the first hundreds of steps instead of 1 / (1 - decay)
  of them, which matters in runs not much longer than that window."""
  if not warmup:
    return decay
  n = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def split_micro_batches(x: jax.Array, k: int) -> jax.Array:
  """[B, ...] -> [k, B / k, ...]. Micro-batch i takes rows i, i+k, i+2k, ...: each device keeps an
  equal share of every micro-batch, so splitting needs no communication."""
  return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)


def build_update(loss_fn: Callable, optimizer: optax.GradientTransformation,
                 lr_schedule: optax.Schedule, *, ema_decay: float = 0.0, ema_warmup: bool = False,
                 grad_accum_steps: int = 1, post_update: Callable | None = None) -> Callable:
  """One optimizer step: (state, batch) -> (state, metrics). Not jitted (see `compile_train_step`).
  post_update(new_params, mutable) -> mutable runs after the optimizer (the method's hook).
  ema_warmup: the EMA's decay follows `ema_decay_at`."""

  def grads_of(params, mutable, batch, key):
    (loss, (aux, mutable)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mutable, batch, key)
    return loss, aux, mutable, grads

  def update(state: TrainState, batch):
    step_key = jax.random.fold_in(state.key, state.step)
    if grad_accum_steps == 1:
      loss, aux, mutable, grads = grads_of(state.params, state.mutable, batch, step_key)
    else:
      k = grad_accum_steps
      micro = jax.tree.map(lambda x: split_micro_batches(x, k), batch)

      def accumulate(carry, inputs):
        mutable, grad_sum, loss_sum, aux_sum = carry
        i, mb = inputs
        loss, aux, mutable, grads = grads_of(state.params, mutable, mb, jax.random.fold_in(step_key, i))
        add = lambda a, b: jax.tree.map(jnp.add, a, b)
        return (mutable, add(grad_sum, grads), loss_sum + loss, add(aux_sum, aux)), None

      aux_shape = jax.eval_shape(lambda: grads_of(state.params, state.mutable,
                                                  jax.tree.map(lambda x: x[0], micro), step_key)[1])
      zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)
      init = (state.mutable, jax.tree.map(jnp.zeros_like, state.params), jnp.zeros((), jnp.float32),
              zeros(aux_shape))
      (mutable, grad_sum, loss_sum, aux_sum), _ = jax.lax.scan(accumulate, init, (jnp.arange(k), micro))
      grads = jax.tree.map(lambda g: g / k, grad_sum)
      loss = loss_sum / k
      aux = jax.tree.map(lambda a: a / k, aux_sum)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr_schedule(state.step), **aux}
    return _advance(state, params, opt_state, mutable, metrics, ema_decay, ema_warmup, post_update)

  return update


def _advance(state: TrainState, params, opt_state, mutable, metrics, ema_decay: float,
             ema_warmup: bool, post_update: Callable | None):
  """The state after an optimizer step: EMA, the method's post-update hook, step + 1."""
  ema = (ema_update(state.ema_params, params, ema_decay_at(state.step, ema_decay, ema_warmup))
         if ema_decay > 0 else params)
  if post_update is not None:
    mutable = post_update(params, mutable)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                       mutable=mutable), metrics


def build_method_update(method_update: Callable, *, ema_decay: float = 0.0, ema_warmup: bool = False,
                        post_update: Callable | None = None) -> Callable:
  """(state, batch) -> (state, metrics) around a method's own optimizer step
  `method_update(params, opt_state, mutable, batch, key, step)` (a GAN's two players): the same
  keys, EMA and hook as `build_update`."""
  def update(state: TrainState, batch):
    step_key = jax.random.fold_in(state.key, state.step)
    params, opt_state, mutable, metrics = method_update(state.params, state.opt_state, state.mutable,
                                                        batch, step_key, state.step)
    return _advance(state, params, opt_state, mutable, metrics, ema_decay, ema_warmup, post_update)

  return update


def compile_train_step(update: Callable, mesh: Mesh, state_shapes, batch_shapes, *,
                       donate: bool = True):
  """jit of `steps_per_call` updates in one `lax.scan`: (state, batches[k, B, ...]) -> (state, metrics[k]).

  Returns the jitted function lowered and compiled for the given shapes (so compile time can be
  measured and nothing compiles inside the loop).
  """
  def multi_step(state, batches):
    return jax.lax.scan(update, state, batches)

  jitted = jax.jit(multi_step, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                   out_shardings=(replicated(mesh), replicated(mesh)),
                   donate_argnums=(0,) if donate else ())
  return jitted.lower(state_shapes, batch_shapes).compile()
