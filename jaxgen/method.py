"""What the training engine needs from a generative method, and the registry of methods.

A method is a backbone plus:
- `init(key) -> variables`: the model variables ({'params': ..., other collections});
- `loss(params, mutable, batch, key) -> (loss, (aux, new_mutable))`: a pure function of its inputs;
  `mutable` holds non-trained collections (e.g. batch statistics; empty for DDPM);
- `sample(params, mutable, key, num, **options) -> images`: jittable, deterministic for a key;
  options a method may take: trajectory_every, sampler, steps, guidance, labels;
- `validate(config)`: config-time checks that raise ConfigError naming the key;
- optionally `bpd(params, mutable, x, key, labels=None) -> {"bpd": [B], ...}`: a per-example upper
  bound on the negative log-likelihood in bits per dimension, for methods with a likelihood bound;
- optionally `denoiser(params, mutable, labels=None) -> D(x, sigma)`: the model as the samplers'
  denoiser (`jaxgen.samplers.core`), valid for sigma in `sigma_range`; what a distillation student
  calls its teacher through;
- optionally `velocity(params, mutable, labels=None) -> v(x_t, t)`: a flow's velocity on the
  path x_t = t x_data + (1 - t) noise (t a [B] array), defined on all of [0, 1];
- optionally `warm_start(variables) -> variables`: run once on the host when a run starts from
  scratch (never on resume), to replace freshly initialised variables with trained ones (a reflow
  or distillation student starting from its teacher, a frozen teacher held as a collection);
- optionally `post_update(params, mutable) -> mutable`: applied inside the compiled step after the
  optimizer update, with the new parameters (e.g. a consistency model's EMA target network);
- optionally `update(params, opt_state, mutable, batch, key, step) -> (params, opt_state, mutable,
  metrics)` with its `optimizer` (whose init makes opt_state): a method whose step is not one
  gradient step of one loss (a GAN's two players) supplies the whole optimizer step; the engine
  still derives the key, keeps the EMA, scans, shards, checkpoints and logs. metrics must hold
  'loss' (checked for finiteness) and 'grad_norm';
- optionally `interpolate(params, mutable, key, rows, cols, **options) -> rows * cols samples`:
  each row a path between two latents.
The engine (jaxgen.train) knows nothing else about the method.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from jaxgen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  model: Any  # the flax module (for parameter counts and inspection)
  init: Callable
  loss: Callable
  sample: Callable
  bpd: Callable | None = None
  denoiser: Callable | None = None
  velocity: Callable | None = None
  sigma_range: tuple[float, float] = (0.0, float("inf"))
  warm_start: Callable | None = None
  post_update: Callable | None = None
  update: Callable | None = None
  optimizer: Any = None  # optax.GradientTransformation of a method with its own update
  interpolate: Callable | None = None


def pure_loss(loss: Callable) -> Callable:
  """Adapts `loss(params, batch, key) -> (loss, aux)` to the engine's signature with collections."""
  def with_collections(params, mutable, batch, key):
    value, aux = loss(params, batch, key)
    return value, (aux, mutable)
  return with_collections


_BUILDERS: dict[str, tuple[Callable, Callable]] = {}


def register(name: str, build: Callable, validate: Callable) -> None:
  _BUILDERS[name] = (build, validate)


def _lookup(name: str):
  import jaxgen.consistency.method  # noqa: F401  (registers "consistency")
  import jaxgen.diffusion.method  # noqa: F401  (registers "ddpm")
  import jaxgen.flow.method  # noqa: F401  (registers "rectified_flow")
  import jaxgen.gan.method  # noqa: F401  (registers "gan")
  if name not in _BUILDERS:
    raise ConfigError(f"Unknown method '{name}'. Set 'method' to one of {', '.join(sorted(_BUILDERS))}.")
  return _BUILDERS[name]


def validate_method_config(config: ml_collections.ConfigDict) -> None:
  _lookup(config.get("method", ""))[1](config)


def build_method(config: ml_collections.ConfigDict) -> Method:
  build, validate = _lookup(config.get("method", ""))
  validate(config)
  return build(config)
