"""The train state: one PyTree holding everything a step changes."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 scalar: number of completed optimizer steps
  params: Any
  opt_state: Any
  ema_params: Any
  mutable: Any           # non-trained model collections (batch statistics, ...); {} when none
  key: jax.Array         # the run's raw uint32[2] key; per-step keys are fold_in(key, step)


def create_train_state(variables: dict, optimizer: optax.GradientTransformation,
                       key: jax.Array) -> TrainState:
  params = variables["params"]
  mutable = {k: v for k, v in variables.items() if k != "params"}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    ema_params=params, mutable=mutable, key=key)
