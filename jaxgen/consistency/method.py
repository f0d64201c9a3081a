"""Consistency models as a method for the training engine: distillation from a trained diffusion
model or flow (CD), or training from data alone (CT, with the improved recipe).

Config section `consistency` (`consistency_config`); `jaxgen.consistency.core` states the
parameterisation and the objective. The state carries, as non-trained collections:
- `consistency/step`: the step count the discretisation curriculum reads (advanced after each
  update, so a resumed run continues the curriculum where it stopped);
- `target`: the target network theta^- = stopgrad(mu theta^- + (1 - mu) theta), updated after each
  optimizer step with the new parameters (target_ema = mu > 0; mu = 0 is iCT's theta^- = theta);
- `teacher`: the teacher's parameters (distillation), loaded once when the run starts, frozen and
  checkpointed with the run, so the run resumes even if the teacher's workdir has moved.
Sampling (section `sample`): one step f(sigma_max z, sigma_max), or multistep consistency sampling
through the levels `sample.sigmas` (default: the Karras levels between sigma_max and sigma_min).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import config as config_lib
from jaxgen import method as method_lib
from jaxgen.consistency import core
from jaxgen.errors import ConfigError
from jaxgen.nn import backbone
from jaxgen.samplers import adapters, grids
from jaxgen.samplers.core import call_x0
from jaxgen.samplers import registry as sampler_registry

MODES = ("distillation", "training")
CURRICULA = ("fixed", "ict")


def consistency_config(**values) -> ml_collections.ConfigDict:
  """The `consistency` config section (defaults: iCT's consistency training on CIFAR-10)."""
  c = ml_collections.ConfigDict({
      "mode": "training",          # training (CT) | distillation (CD, needs teacher)
      "teacher": "",               # CD: a trained ddpm or rectified_flow run (workdir)
      "teacher_params": "ema",     # ema | online parameters of the teacher
      "solver": "heun",            # CD: the teacher's ODE step, euler | heun
      "sigma_min": 0.002,
      "sigma_max": 80.0,
      "sigma_data": 0.5,
      "rho": 7.0,
      "curriculum": "ict",         # fixed (num_levels) | ict (N doubles from s0 to s1)
      "num_levels": 18,            # fixed curriculum: N (CM's CIFAR-10 CD: 18)
      "s0": 10,                    # ict curriculum
      "s1": 1280,
      "distance": "pseudo_huber",  # l2 | l1 | pseudo_huber
      "huber_c": 0.0,              # pseudo-Huber c; 0: 0.00054 sqrt(dimensions) (iCT)
      "weighting": "ict",          # uniform | ict (1 / (sigma_{i+1} - sigma_i))
      "level_sampling": "lognormal",  # uniform | lognormal (iCT)
      "p_mean": -1.1,
      "p_std": 2.0,
      "target_ema": 0.0,           # mu of the target network (CM's CD: 0.95); 0: theta^- = theta
      "time_scale": 250.0,         # c_noise = time_scale * ln(sigma) (CM: 1000 * 0.25)
  })
  c.update(values)
  return c


def sample_config(**values) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "sampler": "consistency",
      "steps": 1,                  # model evaluations (levels)
      "sigmas": (),                # the levels after sigma_max for multistep (steps - 1 of them);
                                   # empty: Karras levels between sigma_max and sigma_min
      "clip_x0": True,             # clip the samples to the data range [-1, 1] (images)
  })
  c.update(values)
  return c


def _cfg(config):
  return config_lib.section(config, "consistency", consistency_config)


def _sample_cfg(config):
  return config_lib.section(config, "sample", sample_config)


def _teacher(c):
  """(teacher config, teacher method) of a distillation config."""
  from jaxgen.train.runs import load_run
  config, ckpt, _ = load_run(c.teacher)
  ckpt.close()
  return config, method_lib.build_method(config)


def validate(config: ml_collections.ConfigDict) -> None:
  backbone.validate_backbone(config, "consistency")
  c, smp = _cfg(config), _sample_cfg(config)
  if config.model.get("num_classes", 0):
    raise ConfigError("Config key 'model.num_classes': consistency models here are unconditional; "
                      "set it to 0.")
  for key, allowed in (("mode", MODES), ("curriculum", CURRICULA), ("distance", core.DISTANCES),
                       ("weighting", core.WEIGHTINGS), ("level_sampling", core.LEVEL_SAMPLINGS),
                       ("solver", core.SOLVERS), ("teacher_params", ("ema", "online"))):
    if c[key] not in allowed:
      raise ConfigError(f"Config key 'consistency.{key}' must be one of {', '.join(allowed)}, "
                        f"not '{c[key]}'.")
  if not 0 < c.sigma_min < c.sigma_max or c.sigma_data <= 0 or c.rho <= 0:
    raise ConfigError("Config keys 'consistency.sigma_min', 'sigma_max', 'sigma_data', 'rho' need "
                      f"0 < sigma_min < sigma_max, sigma_data > 0, rho > 0; got {c.sigma_min}, "
                      f"{c.sigma_max}, {c.sigma_data}, {c.rho}.")
  if c.num_levels < 2 or not 2 <= c.s0 <= c.s1:
    raise ConfigError("Config keys 'consistency.num_levels' (>= 2) and 's0' <= 's1' (>= 2) are "
                      f"invalid: {c.num_levels}, {c.s0}, {c.s1}.")
  if not 0.0 <= c.target_ema < 1.0 or c.huber_c < 0 or c.p_std <= 0:
    raise ConfigError("Config keys 'consistency.target_ema' (in [0, 1)), 'huber_c' (>= 0) and "
                      f"'p_std' (> 0) are invalid: {c.target_ema}, {c.huber_c}, {c.p_std}.")
  if c.mode == "distillation":
    if not c.teacher:
      raise ConfigError("Config key 'consistency.teacher' is empty: distillation needs a trained "
                        "diffusion or flow run (its workdir). Or set consistency.mode=training.")
    teacher_config, teacher = _teacher(c)
    if teacher.denoiser is None:
      raise ConfigError(f"The teacher '{c.teacher}' trained method '{teacher.name}', which has no "
                        "denoiser to distil.")
    if backbone.data_shape(teacher_config) != backbone.data_shape(config):
      raise ConfigError(f"The teacher '{c.teacher}' models data of shape "
                        f"{backbone.data_shape(teacher_config)}, this config "
                        f"{backbone.data_shape(config)}: use the teacher's data section.")
    low, high = teacher.sigma_range
    if c.sigma_min < low * (1 - 1e-4) or c.sigma_max > high * (1 + 1e-4):
      raise ConfigError(f"Config keys 'consistency.sigma_min' / 'sigma_max' ({c.sigma_min}, "
                        f"{c.sigma_max}) leave the teacher's noise range [{low:.4g}, {high:.4g}]; "
                        "set them inside it.")
  validate_sampling(c, smp, smp.sampler, smp.steps)


def validate_sampling(c, smp, sampler: str, steps: int) -> None:
  if sampler not in sampler_registry.SAMPLERS:
    raise ConfigError(f"Sampler '{sampler}' (sample.sampler or --sampler) is unknown; a consistency "
                      "model samples with 'consistency' (or any denoiser sampler of "
                      f"{', '.join(sampler_registry.SAMPLERS)}).")
  if steps < 1:
    raise ConfigError(f"Sampling steps must be >= 1, got {steps}.")
  levels = tuple(smp.sigmas)
  if levels and len(levels) != steps - 1:
    raise ConfigError(f"Config key 'sample.sigmas' lists {len(levels)} levels; {steps} steps need "
                      f"{steps - 1} (the levels after sigma_max).")
  if levels and not all(c.sigma_max > a > b > c.sigma_min for a, b in
                        zip((c.sigma_max * (1 + 1e-9),) + levels, levels + (c.sigma_min,))):
    raise ConfigError(f"Config key 'sample.sigmas' {levels} must decrease strictly inside "
                      f"({c.sigma_min}, {c.sigma_max}).")


def sampling_levels(c, smp, steps: int) -> np.ndarray:
  """[sigma_max, tau_1, ..., tau_{steps-1}, 0]."""
  if steps > 1 and tuple(smp.sigmas) and len(smp.sigmas) == steps - 1:
    middle = np.asarray(smp.sigmas, np.float32)
  else:
    # steps + 1 Karras levels from sigma_max to sigma_min; the first `steps` of them.
    middle = grids.karras(steps + 1, c.sigma_min, c.sigma_max, c.rho)[1:steps]
  return np.concatenate([[c.sigma_max], middle, [0.0]]).astype(np.float32)


def build(config: ml_collections.ConfigDict) -> method_lib.Method:
  shape = backbone.data_shape(config)
  field = backbone.batch_field(config)
  model = backbone.build_backbone(config)
  c, smp = _cfg(config), _sample_cfg(config)
  total_steps = config.train.steps
  huber_c = c.huber_c or 0.00054 * math.sqrt(math.prod(shape))
  max_levels = c.s1 + 1 if c.curriculum == "ict" else c.num_levels
  teacher_method = _teacher(c)[1] if c.mode == "distillation" else None

  def network(params, key=None, train=False):
    rngs = {"dropout": key} if key is not None else None
    return lambda x, t: model.apply({"params": params}, x, t, train, rngs=rngs)

  def f(params, x, sigma, key=None, train=False):
    return core.consistency_function(network(params, key, train), x, sigma, sigma_min=c.sigma_min,
                                     sigma_data=c.sigma_data, time_scale=c.time_scale)

  def init(key):
    variables = dict(backbone.init_variables(model, config, key))
    variables["consistency"] = {"step": jnp.zeros((), jnp.int32)}
    if c.target_ema > 0:
      variables["target"] = variables["params"]
    if teacher_method is not None:
      variables["teacher"] = jax.eval_shape(teacher_method.init, key)["params"]
      variables["teacher"] = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables["teacher"])
    return variables

  def loss(params, mutable, batch, key):
    step = mutable["consistency"]["step"]
    num_levels = (core.ict_num_levels(step, total_steps, c.s0, c.s1) if c.curriculum == "ict"
                  else c.num_levels)
    target_params = mutable["target"] if c.target_ema > 0 else params
    teacher = None
    if teacher_method is not None:
      teacher = teacher_method.denoiser(mutable["teacher"], {})
      teacher = _x0_only(teacher)  # a teacher may return a Prediction
    value, aux = core.consistency_loss(
        lambda x, s, k: f(params, x, s, k, True),
        lambda x, s, k: f(jax.lax.stop_gradient(target_params), x, s, k, True),
        batch[field], key, num_levels=num_levels, max_levels=max_levels, sigma_min=c.sigma_min,
        sigma_max=c.sigma_max, rho=c.rho, teacher=teacher, solver=c.solver,
        distance_kind=c.distance, huber_c=huber_c, weighting=c.weighting,
        level_sampling=c.level_sampling, p_mean=c.p_mean, p_std=c.p_std)
    return value, (aux, mutable)

  def post_update(params, mutable):
    new = dict(mutable, consistency={"step": mutable["consistency"]["step"] + 1})
    if c.target_ema > 0:
      new["target"] = jax.tree.map(lambda t, p: c.target_ema * t + (1.0 - c.target_ema) * p,
                                   mutable["target"], params)
    return new

  def denoiser(params, mutable, labels=None):
    del mutable, labels
    return lambda x, sigma: f(params, x, sigma)

  def sample(params, mutable, key, num, trajectory_every=0, sampler=None, steps=None,
             guidance=None, labels=None, eta=None, grid=None):
    """`steps` evaluations: f(sigma_max z, sigma_max), then re-noise and denoise at each level."""
    del mutable, labels, eta, grid
    if guidance not in (None, 1.0):
      raise ConfigError("Consistency models here are unconditional: no guidance.")
    name = sampler or smp.sampler
    steps = steps or smp.steps
    validate_sampling(c, smp, name, steps)
    sigmas = sampling_levels(c, smp, steps) if name == "consistency" else grids.karras(
        steps, c.sigma_min, c.sigma_max, c.rho)
    denoise = denoiser(params, None)
    if smp.clip_x0 and field == "image":
      denoise = adapters.clip_x0(denoise)
    noise_key, step_key = jax.random.split(key)
    noise = sigmas[0] * jax.random.normal(noise_key, (num,) + shape, jnp.float32)
    options = {"sigma_min": c.sigma_min} if name == "consistency" else {}
    out = sampler_registry.run(name, denoise, jnp.asarray(sigmas), noise, step_key,
                               trajectory=bool(trajectory_every), **options)
    if not trajectory_every:
      return out.x
    scale = 1.0 / np.sqrt(1.0 + np.square(sigmas.astype(np.float64)))
    frames = out.trajectory * jnp.asarray(scale, jnp.float32).reshape((-1,) + (1,) * (1 + len(shape)))
    return out.x, frames[backbone.trajectory_indices(len(sigmas), trajectory_every)]

  def load_teacher(variables):
    from jaxgen.train.runs import load_params
    return dict(variables, teacher=load_params(c.teacher, c.teacher_params))

  return method_lib.Method(name="consistency", model=model, init=init, loss=loss, sample=sample,
                           denoiser=denoiser, sigma_range=(c.sigma_min, c.sigma_max),
                           warm_start=load_teacher if teacher_method is not None else None,
                           post_update=post_update)


def _x0_only(denoise):
  return lambda x, sigma: call_x0(denoise, x, sigma, None)


method_lib.register("consistency", build, validate)
