"""The DDPM family as a method for the training engine.

Config section `diffusion` (see `diffusion_config`): the noise schedule, what the network predicts
(eps, x0, v or EDM-preconditioned), the loss weighting, improved DDPM's learned variance with the
hybrid loss, and label dropout for classifier-free guidance. Section `sample`: the reverse
variance, x0 clipping, the number of (respaced) ancestral steps and the guidance scale.

The backbone is `jaxgen.nn.backbone`'s (U-Net for images, residual MLP for 2D points)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import config as config_lib
from jaxgen import method as method_lib
from jaxgen.diffusion import ddpm, likelihood, losses
from jaxgen.diffusion.ddpm import VARIANCES
from jaxgen.diffusion.parameterization import PREDICTIONS, WEIGHTINGS
from jaxgen.diffusion.schedules import BETA_SCHEDULES, DiscreteSchedule, check_betas, make_betas
from jaxgen.errors import ConfigError
from jaxgen.nn import backbone
from jaxgen.nn.backbone import batch_field, data_shape, default_labels, is_points, validate_backbone
from jaxgen.samplers import adapters, grids
from jaxgen.samplers import registry as sampler_registry


def validate(config: ml_collections.ConfigDict) -> None:
  validate_backbone(config, "ddpm")
  _validate_diffusion(config)


def diffusion_config(**values) -> ml_collections.ConfigDict:
  """The `diffusion` config section with every key the method reads (defaults: DDPM's)."""
  c = ml_collections.ConfigDict({
      "schedule": "linear",      # linear | cosine | scaled_linear | sigmoid
      "num_timesteps": 1000,
      "beta_start": 1e-4,        # linear and scaled_linear
      "beta_end": 0.02,
      "cosine_s": 0.008,         # cosine: the offset s of Nichol & Dhariwal
      "sigmoid_start": -3.0,     # sigmoid: abar(t) from sigmoid((t (end - start) + start) / tau)
      "sigmoid_end": 3.0,
      "sigmoid_tau": 1.0,
      "max_beta": 0.999,         # cosine and sigmoid betas are clipped here
      "prediction": "eps",       # eps | x0 | v | edm (EDM preconditioning)
      "sigma_data": 0.5,         # EDM preconditioning and weighting
      "loss_weighting": "simple",  # simple | snr | min_snr | edm
      "min_snr_gamma": 5.0,
      "learn_variance": False,   # improved DDPM's learned range + hybrid loss
      "vlb_weight": 1e-3,        # lambda of L_hybrid = L_simple + lambda L_vlb
      "label_dropout": 0.1,      # class-conditional models: P(label -> null) for guidance
  })
  c.update(values)
  return c


def sample_config(**values) -> ml_collections.ConfigDict:
  """The `sample` config section: which sampler (jaxgen.samplers.registry) on which grid."""
  c = ml_collections.ConfigDict({
      "sampler": "ddpm",          # ddpm | ddim | euler | heun | dpmpp_2m | ... (registry.SAMPLERS)
      "steps": 0,                 # grid intervals (Heun: 2 K - 1 NFE); 0: all T
      "grid": "timesteps",        # timesteps (a subsequence of the T) | karras (EDM's rho spacing)
                                  # | logsnr (uniform in log sigma)
      "spacing": "linear",        # timesteps grid: linear | leading | quadratic | trailing
      "rho": 7.0,                 # karras grid
      "variance": "fixed_large",  # ddpm sampler: fixed_small | fixed_large | learned
      "eta": -1.0,                # ddim / euler_ancestral / dpmpp_*_sde noise (traced); < 0: the
                                  # sampler's default (ddim 0, euler_ancestral and the SDEs 1)
      "s_churn": 0.0,             # euler / heun: EDM's stochastic churn (traced)
      "clip_x0": True,            # clip the x0 estimate to [-1, 1] (static thresholding)
      "dynamic_threshold": 0.0,   # > 0: Imagen's dynamic thresholding at this percentile instead
      "guidance": 1.0,            # classifier-free guidance scale w (1: conditional, 0: unconditional)
  })
  c.update(values)
  return c


def _diff(config):
  return config_lib.section(config, "diffusion", diffusion_config)


def _sample_cfg(config):
  return config_lib.section(config, "sample", sample_config)


def _betas(d: ml_collections.ConfigDict):
  return make_betas(d.schedule, d.num_timesteps, beta_start=d.beta_start, beta_end=d.beta_end,
                    s=d.cosine_s, max_beta=d.max_beta, start=d.sigmoid_start, end=d.sigmoid_end,
                    tau=d.sigmoid_tau)


def _validate_diffusion(config: ml_collections.ConfigDict) -> None:
  diff, smp = _diff(config), _sample_cfg(config)
  if diff.schedule not in BETA_SCHEDULES:
    raise ConfigError(f"Config key 'diffusion.schedule' must be one of {', '.join(BETA_SCHEDULES)}, "
                      f"not '{diff.schedule}'.")
  if diff.num_timesteps < 1:
    raise ConfigError("Config key 'diffusion.num_timesteps' must be >= 1.")
  if diff.schedule in ("linear", "scaled_linear") and not diff.beta_start <= diff.beta_end:
    raise ConfigError(f"Config keys 'diffusion.beta_start' ({diff.beta_start}) and "
                      f"'diffusion.beta_end' ({diff.beta_end}): the schedule must not decrease.")
  if diff.schedule == "sigmoid" and not (diff.sigmoid_start < diff.sigmoid_end and diff.sigmoid_tau > 0):
    raise ConfigError(f"Config keys 'diffusion.sigmoid_start' ({diff.sigmoid_start}), "
                      f"'diffusion.sigmoid_end' ({diff.sigmoid_end}) and 'diffusion.sigmoid_tau' "
                      f"({diff.sigmoid_tau}): need start < end and tau > 0 for the noise to grow "
                      "monotonically with t.")
  try:
    check_betas(_betas(diff))
  except ValueError as e:
    raise ConfigError(f"Config section 'diffusion' (schedule '{diff.schedule}'): {e}; the noise "
                      "level must grow monotonically with t.") from None
  for key, allowed in (("prediction", PREDICTIONS), ("loss_weighting", WEIGHTINGS)):
    if diff[key] not in allowed:
      raise ConfigError(f"Config key 'diffusion.{key}' must be one of {', '.join(allowed)}, "
                        f"not '{diff[key]}'.")
  for key in ("min_snr_gamma", "sigma_data"):
    if not diff[key] > 0:
      raise ConfigError(f"Config key 'diffusion.{key}' must be > 0, got {diff[key]}.")
  if diff.vlb_weight < 0:
    raise ConfigError(f"Config key 'diffusion.vlb_weight' must be >= 0, got {diff.vlb_weight}.")
  if smp.variance not in VARIANCES:
    raise ConfigError(f"Config key 'sample.variance' must be one of {', '.join(VARIANCES)}, "
                      f"not '{smp.variance}'.")
  if smp.variance == "learned" and not diff.learn_variance:
    raise ConfigError("Config key 'sample.variance' is 'learned' but 'diffusion.learn_variance' is "
                      "False; set one of them differently.")
  if not 0 <= smp.steps <= diff.num_timesteps:
    raise ConfigError(f"Config key 'sample.steps' must lie in [0, {diff.num_timesteps}] "
                      f"(0: all timesteps), got {smp.steps}.")
  _validate_sampler(smp, smp.sampler, smp.steps or diff.num_timesteps, diff.num_timesteps, smp.grid)
  _validate_classes(config, diff, smp)


GRID_KINDS = ("timesteps", "karras", "logsnr")


def _validate_sampler(smp, sampler: str, steps: int, num_timesteps: int, grid: str) -> None:
  """Sampler name, grid and options; also run for the sampler and steps a sample() call asks for."""
  name = sampler_registry.ALIASES.get(sampler, sampler)
  if name not in sampler_registry.SAMPLERS:
    raise ConfigError(f"Sampler '{sampler}' (config key 'sample.sampler' or --sampler) is unknown; "
                      f"choose one of {', '.join(sampler_registry.SAMPLERS)}.")
  if grid not in GRID_KINDS:
    raise ConfigError(f"Config key 'sample.grid' (or --grid) must be one of {', '.join(GRID_KINDS)}, "
                      f"not '{grid}'.")
  if smp.spacing not in grids.SPACINGS:
    raise ConfigError(f"Config key 'sample.spacing' must be one of {', '.join(grids.SPACINGS)}, "
                      f"not '{smp.spacing}'.")
  if not 1 <= steps <= num_timesteps and grid == "timesteps":
    raise ConfigError(f"Sampling steps must lie in [1, {num_timesteps}] on the timesteps grid, got {steps}.")
  if steps < 1:
    raise ConfigError(f"Sampling steps must be >= 1, got {steps}.")
  if smp.eta > 1.0:
    raise ConfigError(f"Config key 'sample.eta' (or --eta) must lie in [0, 1] (or be negative for "
                      f"the sampler's default), got {smp.eta}.")
  if smp.s_churn < 0 or not 0.0 <= smp.dynamic_threshold < 1.0 or smp.rho <= 0:
    raise ConfigError("Config keys 'sample.s_churn' (>= 0), 'sample.dynamic_threshold' (a percentile "
                      f"in [0, 1), 0: off) and 'sample.rho' (> 0) are invalid: {smp.s_churn}, "
                      f"{smp.dynamic_threshold}, {smp.rho}.")


def _validate_classes(config, diff, smp) -> None:
  num_classes = config.model.get("num_classes", 0)
  if not 0.0 <= diff.label_dropout < 1.0:
    raise ConfigError(f"Config key 'diffusion.label_dropout' must lie in [0, 1), got {diff.label_dropout}.")
  if smp.guidance != 1.0 and not (num_classes and diff.label_dropout > 0):
    raise ConfigError(f"Config key 'sample.guidance' is {smp.guidance}, but guidance needs a "
                      "class-conditional model trained with label dropout (model.num_classes > 0, "
                      "diffusion.label_dropout > 0); set sample.guidance=1.")


class Network:
  """The backbone as the diffusion code calls it: (net_x, net_t) -> (output, var_output), with
  class labels and dropout bound, and the learned-variance channels split off."""

  def __init__(self, config: ml_collections.ConfigDict, model):
    self.model = model
    self.learn_variance = _diff(config).learn_variance
    self.num_classes = config.model.get("num_classes", 0)

  def __call__(self, params, net_x, net_t, *, labels=None, train=False, key=None):
    args = (net_x, net_t, train) + ((labels,) if self.num_classes else ())
    rngs = {"dropout": key} if key is not None else None
    out = self.model.apply({"params": params}, *args, rngs=rngs)
    if self.learn_variance:
      output, var_output = jnp.split(out, 2, axis=-1)
      return output, var_output
    return out, None

  def guided(self, params, labels, guidance):
    """(net_x, net_t) -> guided output: uncond + w (cond - uncond), both branches in one batched
    call; the learned variance is the conditional branch's. Without classes: the plain network."""
    if not self.num_classes:
      return lambda x, t: self(params, x, t)
    if isinstance(guidance, (int, float)) and guidance == 1.0:
      return lambda x, t: self(params, x, t, labels=labels)

    def fn(x, t):
      null = jnp.full_like(labels, self.num_classes)
      out, var = self(params, jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                      labels=jnp.concatenate([labels, null]))
      cond, uncond = jnp.split(out, 2)
      guided = uncond + guidance * (cond - uncond)
      return guided, (None if var is None else jnp.split(var, 2)[0])
    return fn


def build_backbone(config: ml_collections.ConfigDict):
  return backbone.build_backbone(config, 2 if _diff(config).learn_variance else 1)


def build(config: ml_collections.ConfigDict) -> method_lib.Method:
  shape = data_shape(config)
  field = batch_field(config)
  model = build_backbone(config)
  net = Network(config, model)
  d, smp = _diff(config), _sample_cfg(config)
  betas = _betas(d)
  schedule = DiscreteSchedule.from_betas(betas)
  num_classes = net.num_classes
  discrete = not is_points(config)
  predict_kw = dict(prediction=d.prediction, sigma_data=d.sigma_data)

  def init(key):
    return backbone.init_variables(model, config, key)

  def loss(params, batch, key):
    labels = None
    if num_classes:
      drop_key, key = jax.random.split(key)
      labels = backbone.drop_labels(drop_key, batch["label"], d.label_dropout, num_classes)
    apply = lambda x, t, k: net(params, x, t, labels=labels, train=True, key=k)
    return losses.diffusion_loss(apply, schedule, batch[field], key, weighting=d.loss_weighting,
                                 min_snr_gamma=d.min_snr_gamma, learn_variance=d.learn_variance,
                                 vlb_weight=d.vlb_weight, discrete=discrete, **predict_kw)

  table_sigmas = np.asarray(schedule.sigmas)

  def sampling_grid(steps: int, kind: str) -> np.ndarray:
    if kind == "karras":
      return grids.karras(steps, float(table_sigmas[0]), float(table_sigmas[-1]), smp.rho)
    if kind == "logsnr":
      return grids.log_snr_uniform(steps, float(table_sigmas[0]), float(table_sigmas[-1]))
    return grids.timestep_sigmas(table_sigmas, grids.spaced_timesteps(d.num_timesteps, steps,
                                                                      smp.spacing))

  def sample(params, mutable, key, num, trajectory_every=0, sampler=None, steps=None,
             guidance=None, labels=None, eta=None, grid=None):
    """`steps` grid intervals of `sampler` (defaults: the sample section; steps 0 or None: all T)
    with the config's grid; `guidance` and `eta` are traced if you pass arrays; `labels` for
    class-conditional models (default: equal blocks of every class). With trajectory_every=k also
    returns every k-th grid point's x_t (noise first, the sample last) in the model's own scaling."""
    del mutable
    name = sampler_registry.ALIASES.get(sampler or smp.sampler, sampler or smp.sampler)
    steps = steps or smp.steps or d.num_timesteps
    grid = grid or smp.grid
    _validate_sampler(smp, name, steps, d.num_timesteps, grid)
    if num_classes and labels is None:
      labels = default_labels(num, num_classes)
    fn = net.guided(params, labels, smp.guidance if guidance is None else guidance)
    denoise = adapters.discrete_denoiser(fn, schedule, d.prediction, d.sigma_data)
    if smp.dynamic_threshold:
      denoise = adapters.dynamic_threshold(denoise, smp.dynamic_threshold)
    elif smp.clip_x0:
      denoise = adapters.clip_x0(denoise)
    sigmas = sampling_grid(steps, grid)
    spec = sampler_registry.get(name)
    values = {"variance": smp.variance, "eta": smp.eta if eta is None else eta,
              "s_churn": smp.s_churn}
    if isinstance(values["eta"], (int, float)) and values["eta"] < 0:
      del values["eta"]  # the sampler's own default
    options = {k: v for k, v in values.items() if k in spec.options}
    noise_key, step_key = jax.random.split(key)
    noise = sigmas[0] * jax.random.normal(noise_key, (num,) + shape, jnp.float32)
    out = spec.run(denoise, jnp.asarray(sigmas), noise, step_key, trajectory=bool(trajectory_every),
                   **options)
    if not trajectory_every:
      return out.x
    # x / sqrt(1 + sigma^2) is the VP x_t the model was trained on: what the step looks like.
    scale = 1.0 / np.sqrt(1.0 + np.square(sigmas.astype(np.float64)))
    frames = out.trajectory * jnp.asarray(scale, jnp.float32).reshape((-1,) + (1,) * (1 + len(shape)))
    return out.x, frames[backbone.trajectory_indices(len(sigmas), trajectory_every)]

  def bpd(params, mutable, x0, key, labels=None):
    """The bound on -log p(x0) (with labels of a class-conditional model: -log p(x0 | label);
    without: the unconditional model behind the null label)."""
    del mutable
    if num_classes and labels is None:
      labels = jnp.full((x0.shape[0],), num_classes, jnp.int32)
    fn = net.guided(params, labels, 1.0)
    denoise = lambda x, t: ddpm.predict(fn, schedule, x, t, **predict_kw)
    return likelihood.bits_per_dim(denoise, schedule, x0, key, variance=smp.variance,
                                   clip_x0=smp.clip_x0, discrete=discrete)

  def denoiser(params, mutable, labels=None):
    """D(x, sigma) of the network (the null label's unconditional model when conditional and no
    labels are given), without clipping: what a distillation student learns from."""
    del mutable
    if num_classes and labels is None:
      return lambda x, sigma: denoiser(params, None, jnp.full((x.shape[0],), num_classes,
                                                              jnp.int32))(x, sigma)
    return adapters.discrete_denoiser(net.guided(params, labels, 1.0), schedule, d.prediction,
                                      d.sigma_data)

  return method_lib.Method(name="ddpm", model=model, init=init, loss=method_lib.pure_loss(loss),
                           sample=sample, bpd=bpd, denoiser=denoiser,
                           sigma_range=(float(table_sigmas[0]), float(table_sigmas[-1])))


method_lib.register("ddpm", build, validate)
