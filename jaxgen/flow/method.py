"""Rectified flow (flow matching on the straight path) as a method for the training engine.

Config section `flow` (`flow_config`): how training times are drawn (uniform, logit-normal, mode,
or the discrete k-step grid of distillation), the network's time scale, label dropout for
classifier-free guidance, and `init_from`: a trained run whose parameters start this one (reflow
and distillation start from the previous flow, Liu et al. 2022). Training data are the dataset's
examples with fresh noise, or a coupling dataset (data.name=couplings, written by `jaxgen reflow`)
whose stored noise replaces the fresh draw. Section `sample` (`sample_config`): the integrator
(flow_euler / flow_heun / flow_midpoint on t in [0, 1], `adaptive` Dormand-Prince, or any sampler of
`jaxgen.samplers.registry` through the velocity's denoiser on a Karras grid), its steps, the SD3 time
shift and the guidance scale. Likelihood: `jaxgen eval --metric bpd` integrates the instantaneous
change of variables (`jaxgen.flow.likelihood`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from jaxgen import config as config_lib
from jaxgen import method as method_lib
from jaxgen.errors import ConfigError
from jaxgen.flow import likelihood, rectified
from jaxgen.nn import backbone
from jaxgen.samplers import adapters, adaptive, flow as flow_samplers, grids
from jaxgen.samplers import registry as sampler_registry

FLOW_SAMPLERS = ("flow_euler", "flow_heun", "flow_midpoint")
SAMPLERS = FLOW_SAMPLERS + ("adaptive",)


def flow_config(**values) -> ml_collections.ConfigDict:
  """The `flow` config section with every key the method reads."""
  c = ml_collections.ConfigDict({
      "time_sampling": "uniform",  # uniform | logit_normal | mode | discrete (k-step distillation)
      "logit_mean": 0.0,           # logit_normal, in SD3's t (1 = noise): > 0 favours noise
      "logit_std": 1.0,
      "mode_scale": 1.29,          # mode sampling's c (SD3)
      "discrete_steps": 1,         # discrete: t uniform on {0, 1/k, ..., (k-1)/k}
      "time_scale": 1000.0,        # the network sees t * time_scale (its embedding's range)
      "label_dropout": 0.1,        # class-conditional models: P(label -> null) for guidance
      "init_from": "",             # a trained run (workdir) whose parameters start this run
      "init_params": "ema",        # ema | online parameters of init_from
      "divergence": "auto",        # likelihood: exact | rademacher | gaussian | auto (exact <= 8 dims)
      "likelihood_tol": 1e-5,      # likelihood: the adaptive solver's rtol = atol
  })
  c.update(values)
  return c


def sample_config(**values) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "sampler": "flow_euler",  # flow_euler | flow_heun | flow_midpoint | adaptive | registry names
      "steps": 50,              # grid intervals (adaptive: unused)
      "shift": 1.0,             # SD3's time shift of the flow grid (> 1: more steps near noise)
      "t_min": 0.0,             # flow grid start (0: pure noise)
      "tol": 1e-5,              # adaptive: rtol = atol
      "sigma_max": 80.0,        # registry (sigma-grid) samplers: a Karras grid, rho 7
      "sigma_min": 0.002,
      "eta": -1.0,              # stochastic registry samplers' noise (< 0: their default)
      "guidance": 1.0,          # classifier-free guidance scale w on the velocity
  })
  c.update(values)
  return c


def _flow(config):
  return config_lib.section(config, "flow", flow_config)


def _sample_cfg(config):
  return config_lib.section(config, "sample", sample_config)


def validate(config: ml_collections.ConfigDict) -> None:
  backbone.validate_backbone(config, "rectified_flow")
  f, smp = _flow(config), _sample_cfg(config)
  if f.time_sampling not in rectified.TIME_SAMPLINGS:
    raise ConfigError(f"Config key 'flow.time_sampling' must be one of "
                      f"{', '.join(rectified.TIME_SAMPLINGS)}, not '{f.time_sampling}'.")
  if f.logit_std <= 0 or f.discrete_steps < 1 or f.time_scale <= 0:
    raise ConfigError("Config keys 'flow.logit_std' (> 0), 'flow.discrete_steps' (>= 1) and "
                      f"'flow.time_scale' (> 0) are invalid: {f.logit_std}, {f.discrete_steps}, "
                      f"{f.time_scale}.")
  if not -1.0 <= f.mode_scale <= 2.0 / (math.pi - 2.0):
    raise ConfigError(f"Config key 'flow.mode_scale' must lie in [-1, {2 / (math.pi - 2):.3f}] for "
                      f"the mode density to stay on [0, 1], got {f.mode_scale}.")
  if f.time_sampling == "discrete" and config.data.name != "couplings":
    raise ConfigError("Config key 'flow.time_sampling' is 'discrete' (k-step distillation), which "
                      "trains on a fixed coupling: set data.name=couplings and data.path to the "
                      "output of `jaxgen reflow`.")
  if f.init_params not in ("ema", "online"):
    raise ConfigError(f"Config key 'flow.init_params' must be ema or online, not '{f.init_params}'.")
  if f.divergence not in likelihood.DIVERGENCES + ("auto",):
    raise ConfigError(f"Config key 'flow.divergence' must be auto or one of "
                      f"{', '.join(likelihood.DIVERGENCES)}, not '{f.divergence}'.")
  num_classes = config.model.get("num_classes", 0)
  if not 0.0 <= f.label_dropout < 1.0:
    raise ConfigError(f"Config key 'flow.label_dropout' must lie in [0, 1), got {f.label_dropout}.")
  if smp.guidance != 1.0 and not (num_classes and f.label_dropout > 0):
    raise ConfigError(f"Config key 'sample.guidance' is {smp.guidance}, but guidance needs a "
                      "class-conditional model trained with label dropout (model.num_classes > 0, "
                      "flow.label_dropout > 0); set sample.guidance=1.")
  validate_sampling(smp, smp.sampler, smp.steps)


def validate_sampling(smp, sampler: str, steps: int) -> None:
  """The sampler and steps of the config, or of a sample() call."""
  name = sampler_registry.ALIASES.get(sampler, sampler)
  if name not in SAMPLERS and name not in sampler_registry.SAMPLERS:
    raise ConfigError(f"Sampler '{sampler}' (config key 'sample.sampler' or --sampler) is unknown; "
                      f"a flow samples with {', '.join(SAMPLERS)} or any of "
                      f"{', '.join(sampler_registry.SAMPLERS)}.")
  if steps < 1 and name != "adaptive":
    raise ConfigError(f"Sampling steps must be >= 1, got {steps}.")
  if not 0.0 <= smp.t_min < 1.0 or smp.shift <= 0 or smp.tol <= 0:
    raise ConfigError("Config keys 'sample.t_min' (in [0, 1)), 'sample.shift' (> 0) and "
                      f"'sample.tol' (> 0) are invalid: {smp.t_min}, {smp.shift}, {smp.tol}.")
  if not 0 < smp.sigma_min < smp.sigma_max:
    raise ConfigError(f"Config keys 'sample.sigma_min' and 'sample.sigma_max' need 0 < min < max, "
                      f"got {smp.sigma_min}, {smp.sigma_max}.")


def guided_velocity(velocity, labels, null_label: int, scale):
  """v_null + w (v_cond - v_null), both branches in one batched call (v is affine in the network
  output, so guiding the velocity is guiding the denoiser)."""
  def fn(x, t):
    both = velocity(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                    jnp.concatenate([labels, jnp.full_like(labels, null_label)]))
    cond, uncond = jnp.split(both, 2)
    return uncond + scale * (cond - uncond)
  return fn


def build(config: ml_collections.ConfigDict) -> method_lib.Method:
  shape = backbone.data_shape(config)
  field = backbone.batch_field(config)
  model = backbone.build_backbone(config)
  f, smp = _flow(config), _sample_cfg(config)
  num_classes = config.model.get("num_classes", 0)
  time_options = dict(logit_mean=f.logit_mean, logit_std=f.logit_std, mode_scale=f.mode_scale,
                      steps=f.discrete_steps)
  dim = math.prod(shape)

  def network(params, x_t, t, labels=None, *, train=False, key=None):
    args = (x_t, t * f.time_scale, train) + ((labels,) if num_classes else ())
    return model.apply({"params": params}, *args, rngs={"dropout": key} if key is not None else None)

  def velocity_fn(params, labels=None, guidance=1.0):
    """v(x_t, t) of the trained network (guided when class-conditional and w != 1)."""
    if not num_classes:
      return lambda x, t: network(params, x, t)
    if isinstance(guidance, (int, float)) and guidance == 1.0:
      return lambda x, t: network(params, x, t, labels)
    return guided_velocity(lambda x, t, lb: network(params, x, t, lb), labels, num_classes, guidance)

  def init(key):
    return backbone.init_variables(model, config, key)

  def loss(params, batch, key):
    labels = None
    if num_classes:
      drop_key, key = jax.random.split(key)
      labels = backbone.drop_labels(drop_key, batch["label"], f.label_dropout, num_classes)
    apply = lambda x_t, t, k: network(params, x_t, t, labels, train=True, key=k)
    return rectified.flow_matching_loss(apply, batch[field], key, noise=batch.get("noise"),
                                        time_sampling=f.time_sampling, **time_options)

  def sample(params, mutable, key, num, trajectory_every=0, sampler=None, steps=None,
             guidance=None, labels=None, eta=None, grid=None, noise=None):
    """`steps` intervals of `sampler` (defaults: the sample section) from N(0, I) noise drawn from
    `key` (or the given `noise`); with trajectory_every=k also every k-th x_t (noise first)."""
    del mutable, grid
    name = sampler_registry.ALIASES.get(sampler or smp.sampler, sampler or smp.sampler)
    steps = steps or smp.steps
    validate_sampling(smp, name, steps)
    if num_classes and labels is None:
      labels = backbone.default_labels(num, num_classes)
    v = velocity_fn(params, labels, smp.guidance if guidance is None else guidance)
    noise_key, step_key = jax.random.split(key)
    if noise is None:
      noise = jax.random.normal(noise_key, (num,) + shape, jnp.float32)
    if name == "adaptive":
      if trajectory_every:
        raise ConfigError("The adaptive sampler keeps no trajectory; pick a fixed-step sampler.")
      return adaptive.solve_ode(lambda x, t: v(x, jnp.broadcast_to(t, (x.shape[0],))), noise,
                                smp.t_min, 1.0, rtol=smp.tol, atol=smp.tol).y
    if name in FLOW_SAMPLERS:
      ts = grids.flow_times(steps, smp.t_min, smp.shift)
      out = getattr(flow_samplers, name)(v, jnp.asarray(ts), noise, trajectory=bool(trajectory_every))
      frames = out.trajectory
    else:
      sigmas = grids.karras(steps, smp.sigma_min, smp.sigma_max)
      spec = sampler_registry.get(name)
      options = {"eta": smp.eta if eta is None else eta} if "eta" in spec.options else {}
      if isinstance(options.get("eta"), (int, float)) and options["eta"] < 0:
        options = {}
      out = spec.run(adapters.velocity_denoiser(v), jnp.asarray(sigmas), sigmas[0] * noise,
                     step_key, trajectory=bool(trajectory_every), **options)
      ts = grids.sigmas_to_flow_times(sigmas)
      frames = None if out.trajectory is None else out.trajectory * jnp.asarray(ts).reshape(
          (-1,) + (1,) * (1 + len(shape)))  # x_t = t x: the flow's own scale
    if not trajectory_every:
      return out.x
    return out.x, frames[backbone.trajectory_indices(len(ts), trajectory_every)]

  def bpd(params, mutable, x, key, labels=None):
    """-log p(x) in bits/dim by the flow's ODE (images: uniformly dequantised 8-bit values)."""
    del mutable
    deq_key, probe_key = jax.random.split(key)
    scale = 0.0 if field == "point" else 127.5
    if scale:
      x = x + jax.random.uniform(deq_key, x.shape) / scale
    if num_classes and labels is None:
      labels = jnp.full((x.shape[0],), num_classes, jnp.int32)
    divergence = f.divergence if f.divergence != "auto" else ("exact" if dim <= 8 else "rademacher")
    out = likelihood.log_likelihood(velocity_fn(params, labels), x, probe_key,
                                    divergence=divergence, rtol=f.likelihood_tol,
                                    atol=f.likelihood_tol)
    return {"bpd": likelihood.bits_per_dim(out.log_prob, dim, quantization_scale=scale),
            "nfe": jnp.broadcast_to(out.nfe, (x.shape[0],)).astype(jnp.float32)}

  def denoiser(params, mutable, labels=None):
    del mutable
    return adapters.velocity_denoiser(velocity_fn(params, labels))

  def velocity(params, mutable, labels=None):
    del mutable
    return velocity_fn(params, labels)

  def start_from_trained(variables):
    from jaxgen.train.runs import load_params
    return dict(variables, params=load_params(f.init_from, f.init_params))

  return method_lib.Method(name="rectified_flow", model=model, init=init,
                           loss=method_lib.pure_loss(loss), sample=sample, bpd=bpd,
                           denoiser=denoiser, velocity=velocity,
                           warm_start=start_from_trained if f.init_from else None)


method_lib.register("rectified_flow", build, validate)
