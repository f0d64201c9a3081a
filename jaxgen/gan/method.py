"""GANs as a method of the training engine: the networks a config names, the two-player update
(jaxgen.gan.step) in place of the engine's single-loss step, and sampling from the generator.

Config sections:
- `model` (`model_config`): `name` the generator (mlp | dcgan | stylegan), `discriminator`
  (mlp | dcgan | patchgan | stylegan), their sizes, and the discriminator's stabilisers (spectral
  norm, minibatch stddev, minibatch discrimination); StyleGAN's mapping, mixing, truncation cutoff
  and progressive growing.
- `gan` (`gan_config`): the objective, penalties (WGAN-GP, R1), weight clipping, n_critic,
  unrolled steps, PacGAN packing, latent size.
- `optimizer` (the generator's) and `d_optimizer` (the discriminator's; TTUR when they differ).
- `sample` (`sample_config`): truncation psi, and which BatchNorm statistics the generator samples
  with (running averages, those of the sampled batch, or standing statistics recomputed for the
  weights sampled from: the default for an EMA generator).
The train state holds params {'generator', 'discriminator'}, one optimizer state per player, and
the networks' collections under mutable['generator'] / ['discriminator'] (BatchNorm statistics,
spectral-norm vectors, StyleGAN's running mean of w). `train.ema_decay` keeps an EMA of the
generator (and, unused, of the discriminator); sampling uses the EMA generator by default.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen import config as config_lib
from jaxgen import method as method_lib
from jaxgen.errors import ConfigError
from jaxgen.gan import losses
from jaxgen.gan.step import Players, Settings, build_two_player_update
from jaxgen.nn import backbone, gan as gan_nets, stylegan
from jaxgen.samplers.inversion import slerp
from jaxgen.train.optim import make_optimizer

GENERATORS = ("mlp", "dcgan", "stylegan")
# "discriminator": the unrolled updates continue the discriminator's own optimizer and state (Metz
# et al. 2017); "sgd": plain gradient steps of gan.unroll_lr.
UNROLL_OPTIMIZERS = ("discriminator", "sgd")
DISCRIMINATORS = ("mlp", "dcgan", "patchgan", "stylegan")


def gan_config(**values) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "objective": "non_saturating",  # minimax | non_saturating | least_squares | hinge | wasserstein | wgan_gp
      "latent_dim": 100,              # z ~ N(0, I) of this size
      "n_critic": 1,                  # discriminator steps per generator step
      "unrolled_steps": 0,            # > 0: the generator's loss through k unrolled D updates
      "unroll_optimizer": "discriminator",  # the unrolled updates' optimizer: discriminator | sgd
      "unroll_lr": 0.0,               # sgd unrolling's step size (0: the discriminator's lr)
      "pack": 1,                      # PacGAN: the discriminator judges m examples jointly
      "gp_weight": 0.0,               # WGAN-GP's lambda (10)
      "r1_gamma": 0.0,                # R1's gamma (StyleGAN: 10)
      "r1_every": 1,                  # lazy R1: gamma x k on every k-th step (StyleGAN2: 16)
      "weight_clip": 0.0,             # WGAN: clip critic parameters to [-c, c] (0.01)
      # GP / R1 through minibatch discrimination: true differentiates D(x_i) with respect to x_i
      # alone, the other examples held fixed (the penalty's definition); false the summed logits,
      # which adds how x_i moves the other examples' logits (runs before this key existed)
      "penalty_per_example": True,
  })
  c.update(values)
  return c


def model_config(**values) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "name": "dcgan",                # the generator: mlp | dcgan | stylegan
      "discriminator": "dcgan",       # mlp | dcgan | patchgan | stylegan
      # mlp (PacGAN's 2D networks)
      "g_hidden": 400, "g_depth": 4,
      "d_hidden": 200, "d_pieces": 5, "d_depth": 3,
      "mlp_init_std": 0.0,            # mlp: 0 flax's default init; > 0 kernels ~ N(0, std^2),
                                      # zero biases (PacGAN's 0.02)
      "g_bn_momentum": gan_nets.BATCH_NORM_MOMENTUM,  # mlp generator's BatchNorm (PacGAN's 0.95)
      "d_pack_init": "dense",         # mlp discriminator with gan.pack > 1: its first layer's
                                      # init, dense (PacGAN's) | block (each unit starts on one
                                      # packed example: nn.gan.packed_block_init)
      # dcgan / patchgan / stylegan widths: channels at full resolution (doubling as it halves)
      "g_ch": 64, "d_ch": 64, "max_ch": 512,
      "g_norm": "batch",              # dcgan / mlp generator: batch | none
      "d_norm": "batch",              # dcgan / patchgan discriminator: none | batch | layer | instance
      "patch_layers": 3,              # patchgan: stride-2 layers (3: the 70x70 PatchGAN)
      # discriminator stabilisers
      "spectral_norm": False,
      "minibatch_std_group": 0,       # > 0: minibatch stddev over groups of this size
      "minibatch_kernels": 0,         # > 0: minibatch discrimination with this many kernels
      "minibatch_kernel_dim": 5,
      "minibatch_init_std": 0.1,      # the kernels' initial std (scale it to the features': nn.gan)
      # stylegan
      "w_dim": 512, "mapping_depth": 8, "mixing_prob": 0.9, "w_avg_decay": 0.995,
      "truncation_cutoff": 0,         # truncate the first k layers' styles (0: all)
      "progressive": False,           # progressive growing from 4x4
      "progressive_steps": 1000,      # steps per phase (each level: fade in, then stable)
      "conv_impl": "auto",
  })
  c.update(values)
  return c


def sample_config(**values) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "truncation": 1.0,              # StyleGAN's psi (1: no truncation)
      "batch_norm": "auto",           # the generator's BatchNorm statistics at sampling: running
                                      # (the training run's averages, which belong to the raw
                                      # generator) | batch (the sampled batch's own: samples then
                                      # depend on the batch) | standing (recomputed for the params
                                      # sampled from, e.g. the EMA generator, on fixed latent batches;
                                      # BigGAN's standing statistics) | auto (standing when the run
                                      # keeps an EMA generator, else running)
      "standing_batches": 16,         # standing statistics: this many batches ...
      "standing_batch_size": 256,     # ... of this many latents, per-batch statistics averaged
      "interpolation": "auto",        # latent grids: z (slerp of the latents) | w (StyleGAN: lerp of
                                      # the styles, as in its perceptual path length) | auto (w for
                                      # StyleGAN, z otherwise)
  })
  c.update(values)
  return c


BATCH_NORM_MODES = ("auto", "running", "batch", "standing")
# The standing statistics' latents come from this key, not the sampling key: the statistics, and so
# every sample, do not depend on how many samples are drawn or with which seed.
STANDING_STATS_SEED = 20190328


def batch_norm_mode(config: ml_collections.ConfigDict) -> str:
  """sample.batch_norm with auto resolved: standing statistics when samples come from an EMA of the
  generator (the running averages were gathered with the raw generator's weights), else running."""
  mode = config_lib.section(config, "sample", sample_config).batch_norm
  if mode == "auto":
    return "standing" if config.train.get("ema_decay", 0.0) > 0 else "running"
  return mode


def _sections(config):
  return (config_lib.section(config, "gan", gan_config), config_lib.section(config, "model", model_config),
          config_lib.section(config, "sample", sample_config))


def _require(cond, message):
  if not cond:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
  g, m, smp = _sections(config)
  points = backbone.is_points(config)
  _require(m.name in GENERATORS, f"Config key 'model.name' (the generator) must be one of "
           f"{', '.join(GENERATORS)}, not '{m.name}'.")
  _require(m.discriminator in DISCRIMINATORS, f"Config key 'model.discriminator' must be one of "
           f"{', '.join(DISCRIMINATORS)}, not '{m.discriminator}'.")
  if points:
    _require(m.name == "mlp" and m.discriminator == "mlp", "2D data (data.name=toy2d) takes the MLP "
             "networks: set model.name=mlp and model.discriminator=mlp.")
  else:
    _require("mlp" not in (m.name, m.discriminator), "Config keys 'model.name' / "
             "'model.discriminator': the MLP networks are for 2D points; images take dcgan, "
             "patchgan or stylegan.")
    try:
      gan_nets.resolution_levels(config.data.image_size)
    except ValueError as e:
      raise ConfigError(f"Config key 'data.image_size': {e}.") from None
    if m.discriminator == "patchgan":
      _require(1 <= m.patch_layers and config.data.image_size // 2 ** m.patch_layers >= 1,
               f"Config key 'model.patch_layers' ({m.patch_layers}) must be >= 1 and leave at "
               f"least one patch of the {config.data.image_size}px image.")
  _require(g.objective in losses.OBJECTIVES, f"Config key 'gan.objective' must be one of "
           f"{', '.join(losses.OBJECTIVES)}, not '{g.objective}'.")
  for key in ("latent_dim", "n_critic", "pack"):
    _require(isinstance(g[key], int) and g[key] >= 1, f"Config key 'gan.{key}' must be an integer "
             f">= 1, got {g[key]!r}.")
  _require(g.unrolled_steps >= 0, f"Config key 'gan.unrolled_steps' must be >= 0, got {g.unrolled_steps}.")
  _require(g.get("unroll_optimizer", "discriminator") in UNROLL_OPTIMIZERS, "Config key "
           f"'gan.unroll_optimizer' must be one of {', '.join(UNROLL_OPTIMIZERS)}, not "
           f"'{g.get('unroll_optimizer')}'.")
  _require(g.get("unroll_lr", 0.0) >= 0, f"Config key 'gan.unroll_lr' must be >= 0, got {g.get('unroll_lr')}.")
  r1_every = g.get("r1_every", 1)
  _require(isinstance(r1_every, int) and r1_every >= 1, "Config key 'gan.r1_every' must be an "
           f"integer >= 1 (1: R1 on every step), got {r1_every!r}.")
  _require(isinstance(g.get("penalty_per_example", True), bool), "Config key "
           f"'gan.penalty_per_example' must be true or false, got {g.get('penalty_per_example')!r}.")
  for key in ("gp_weight", "r1_gamma", "weight_clip"):
    _require(g[key] >= 0, f"Config key 'gan.{key}' must be >= 0, got {g[key]}.")
  if g.objective == "wgan_gp":
    _require(g.gp_weight > 0, "Config key 'gan.gp_weight' is 0 with objective wgan_gp: WGAN-GP "
             "needs its gradient penalty (the paper's lambda is 10).")
  if g.objective == "wasserstein":
    _require(g.weight_clip > 0 or m.spectral_norm or g.gp_weight > 0, "The wasserstein objective "
             "needs a Lipschitz critic: set gan.weight_clip (WGAN: 0.01), model.spectral_norm=true, "
             "or use objective wgan_gp.")
  penalised = g.gp_weight > 0 or g.r1_gamma > 0
  uses_bn = m.discriminator in ("dcgan", "patchgan") and m.d_norm == "batch"
  _require(not (penalised and uses_bn), "Config key 'model.d_norm' is 'batch' with a gradient "
           "penalty: the penalty is a per-example gradient norm, which batch normalisation breaks "
           "(Gulrajani et al. 2017, sec. 4). Set model.d_norm to layer, instance or none.")
  _require(m.get("mlp_init_std", 0.0) >= 0, f"Config key 'model.mlp_init_std' must be >= 0 (0: "
           f"flax's default initialisation), got {m.get('mlp_init_std')}.")
  pack_init = m.get("d_pack_init", "dense")
  _require(pack_init in gan_nets.PACK_INITS, f"Config key 'model.d_pack_init' must be one of "
           f"{', '.join(gan_nets.PACK_INITS)}, not '{pack_init}'.")
  _require(pack_init == "dense" or m.discriminator == "mlp", f"Config key 'model.d_pack_init' is "
           f"'{pack_init}', which the mlp discriminator alone has (not '{m.discriminator}'); set it "
           "to dense.")
  _require(m.get("minibatch_init_std", 0.1) > 0, f"Config key 'model.minibatch_init_std' must be "
           f"> 0, got {m.get('minibatch_init_std')}.")
  _require(0 <= m.get("g_bn_momentum", gan_nets.BATCH_NORM_MOMENTUM) < 1,
           f"Config key 'model.g_bn_momentum' must be in [0, 1), got {m.get('g_bn_momentum')}.")
  _require(m.g_norm in ("batch", "none"), f"Config key 'model.g_norm' must be batch or none, not '{m.g_norm}'.")
  _require(m.d_norm in gan_nets.NORMS, f"Config key 'model.d_norm' must be one of "
           f"{', '.join(gan_nets.NORMS)}, not '{m.d_norm}'.")
  if m.name == "stylegan" or m.discriminator == "stylegan" or m.progressive:
    _require(not m.progressive or (m.name == "stylegan" and m.discriminator == "stylegan"),
             "Config key 'model.progressive' needs the StyleGAN generator and discriminator "
             "(model.name=stylegan, model.discriminator=stylegan).")
    _require(m.progressive_steps >= 1, "Config key 'model.progressive_steps' must be >= 1.")
    _require(0 <= m.mixing_prob <= 1 and 0 <= m.w_avg_decay < 1, "Config keys "
             "'model.mixing_prob' (in [0, 1]) and 'model.w_avg_decay' (in [0, 1)) are invalid.")
  if m.discriminator == "stylegan":
    _require(not m.spectral_norm and not m.minibatch_kernels, "The StyleGAN discriminator has "
             "its own minibatch stddev and equalised learning rate: set model.spectral_norm=false "
             "and model.minibatch_kernels=0.")
  _require(smp.batch_norm in BATCH_NORM_MODES, "Config key 'sample.batch_norm' must be one of "
           f"{', '.join(BATCH_NORM_MODES)}, not '{smp.batch_norm}'.")
  _require(smp.standing_batches >= 1 and smp.standing_batch_size >= 2, "Config keys "
           "'sample.standing_batches' (>= 1) and 'sample.standing_batch_size' (>= 2) are invalid.")
  _require(smp.interpolation in ("auto", "z", "w"), f"Config key 'sample.interpolation' must be "
           f"auto, z or w, not '{smp.interpolation}'.")
  _require(smp.interpolation != "w" or m.name == "stylegan", "Config key 'sample.interpolation' is w, "
           "which needs StyleGAN's mapping network (model.name=stylegan); use z.")
  _require(smp.truncation >= 0, f"Config key 'sample.truncation' must be >= 0, got {smp.truncation}.")
  t = config.train
  _require(t.get("grad_accum_steps", 1) == 1, "Config key 'train.grad_accum_steps' must be 1 for a "
           "GAN: each player's step needs its opponent's latest parameters. Use gan.n_critic to "
           "split a large batch over several discriminator steps.")
  _require(t.batch_size % g.n_critic == 0, f"Config key 'train.batch_size' ({t.batch_size}) must "
           f"be a multiple of gan.n_critic ({g.n_critic}): each critic step takes one share.")
  micro = t.batch_size // g.n_critic
  _require(micro % g.pack == 0, f"Each player's batch ({micro} = train.batch_size / gan.n_critic) "
           f"must be a multiple of gan.pack ({g.pack}).")
  group = _minibatch_std_group(m)
  if group:
    _require((micro // g.pack) % min(group, micro // g.pack) == 0, f"The discriminator's batch "
             f"({micro // g.pack}) must be a multiple of the minibatch stddev group ({group}).")
  d_opt = config.get("d_optimizer", None)
  _require(d_opt is None or "lr" in d_opt, "Config section 'd_optimizer' needs 'lr' (it is a full "
           "optimizer section like 'optimizer').")


def _minibatch_std_group(m) -> int:
  """The discriminator's minibatch-stddev group: the config's, or StyleGAN's default of 4."""
  return m.minibatch_std_group or (4 if m.discriminator == "stylegan" else 0)


def _networks(config, g, m):
  shape = backbone.data_shape(config)
  if backbone.is_points(config):
    init_std = m.get("mlp_init_std", 0.0)  # .get: workdirs saved before the key still load
    gen = gan_nets.MLPGenerator(out_dim=shape[-1], hidden=m.g_hidden, depth=m.g_depth,
                                batch_norm=m.g_norm == "batch",
                                bn_momentum=m.get("g_bn_momentum", gan_nets.BATCH_NORM_MOMENTUM),
                                init_std=init_std)
    disc = gan_nets.MLPDiscriminator(hidden=m.d_hidden, pieces=m.d_pieces, depth=m.d_depth,
                                     spectral_norm=m.spectral_norm,
                                     init_std=init_std,
                                     minibatch_kernels=m.minibatch_kernels,
                                     minibatch_kernel_dim=m.minibatch_kernel_dim,
                                     minibatch_init_std=m.get("minibatch_init_std", 0.1),
                                     pack=g.pack, pack_init=m.get("d_pack_init", "dense"))
    return gen, disc
  size, channels = config.data.image_size, config.data.channels
  if m.name == "dcgan":
    gen = gan_nets.DCGANGenerator(image_size=size, channels=channels, base_ch=m.g_ch, norm=m.g_norm,
                                  conv_impl=m.conv_impl)
  else:
    gen = stylegan.StyleGANGenerator(image_size=size, channels=channels, z_dim=g.latent_dim,
                                     w_dim=m.w_dim, mapping_depth=m.mapping_depth, base_ch=m.g_ch,
                                     max_ch=m.max_ch, mixing_prob=m.mixing_prob,
                                     w_avg_decay=m.w_avg_decay, truncation_cutoff=m.truncation_cutoff,
                                     progressive=m.progressive, conv_impl=m.conv_impl)
  if m.discriminator == "dcgan":
    disc = gan_nets.DCGANDiscriminator(image_size=size, base_ch=m.d_ch, norm=m.d_norm,
                                       spectral_norm=m.spectral_norm,
                                       minibatch_std_group=m.minibatch_std_group,
                                       minibatch_kernels=m.minibatch_kernels,
                                       minibatch_kernel_dim=m.minibatch_kernel_dim,
                                       minibatch_init_std=m.get("minibatch_init_std", 0.1),
                                       conv_impl=m.conv_impl)
  elif m.discriminator == "patchgan":
    disc = gan_nets.PatchGANDiscriminator(base_ch=m.d_ch, num_layers=m.patch_layers, norm=m.d_norm,
                                          spectral_norm=m.spectral_norm, conv_impl=m.conv_impl)
  else:
    disc = stylegan.StyleGANDiscriminator(image_size=size, base_ch=m.d_ch, max_ch=m.max_ch,
                                          minibatch_std_group=_minibatch_std_group(m),
                                          progressive=m.progressive, conv_impl=m.conv_impl)
  return gen, disc


def pack_examples(x: jax.Array, m: int) -> jax.Array:
  """PacGAN: [B, ..., C] -> [B / m, ..., m C], consecutive examples concatenated on the last axis."""
  if m == 1:
    return x
  b = x.shape[0]
  y = x.reshape((b // m, m) + x.shape[1:])
  y = jnp.moveaxis(y, 1, -2)
  return y.reshape(y.shape[:-2] + (m * x.shape[-1],))


def standing_batch_stats(gen, g_params, g_state, latent_dim: int, batches: int, batch_size: int):
  """The BatchNorm statistics of these generator weights (e.g. the EMA generator's, whose running
  averages were never gathered): per-batch means and variances over `batches` batches of Gaussian
  latents, averaged (Brock et al. 2019, "standing statistics"). The latents come from a fixed key.
  A training-mode call from zeroed statistics leaves (1 - momentum) x the batch's own."""
  zeros = jax.tree.map(jnp.zeros_like, g_state["batch_stats"])
  keys = jax.random.split(jax.random.PRNGKey(STANDING_STATS_SEED), batches)

  def one_batch(k):
    z = jax.random.normal(k, (batch_size, latent_dim), jnp.float32)
    _, new = _apply(gen, dict(g_state, batch_stats=zeros), g_params, z, True)
    return jax.tree.map(lambda s: s / (1.0 - gan_nets.BATCH_NORM_MOMENTUM), new["batch_stats"])
  return jax.tree.map(lambda s: jnp.mean(s, axis=0), jax.lax.map(one_batch, keys))


def _apply(module, variables_state, params, *args, **kwargs):
  """module.apply in training mode, returning (output, updated collections)."""
  names = list(variables_state)
  out = module.apply({"params": params, **variables_state}, *args, mutable=names or False, **kwargs)
  return out if names else (out, {})


def build(config: ml_collections.ConfigDict) -> method_lib.Method:
  g, m, smp = _sections(config)
  shape = backbone.data_shape(config)
  field = backbone.batch_field(config)
  gen, disc = _networks(config, g, m)
  is_style = m.name == "stylegan"
  bn_mode = batch_norm_mode(config)
  d_style = m.discriminator == "stylegan"
  levels = gan_nets.resolution_levels(config.data.image_size) + 1 if not backbone.is_points(config) else 1
  total = config.train.steps
  g_tx, g_sched = make_optimizer(config.optimizer, total)
  d_opt = config.get("d_optimizer", config.optimizer).copy_and_resolve_references()
  unroll_tx = None
  if g.unrolled_steps and g.get("unroll_optimizer", "discriminator") == "sgd":
    unroll_tx = optax.sgd(g.get("unroll_lr", 0.0) or d_opt.lr)
  elif g.unrolled_steps:
    # The generator's gradient runs through the discriminator's Adam updates; where a second
    # moment is still 0 (a parameter whose gradient has always been 0), d sqrt(v) / dv is
    # infinite and the gradient NaN. A tiny eps_root inside the root keeps it finite.
    with d_opt.ignore_type():
      d_opt.eps_root = max(d_opt.get("eps_root", 0.0), 1e-16)
  d_tx, d_sched = make_optimizer(d_opt, total, updates_per_step=g.n_critic)

  def latent(key, n):
    return jax.random.normal(key, (n, g.latent_dim), jnp.float32)

  def generator_kwargs(key, lod):
    return {"key": key, "lod": lod} if is_style else {}

  def generate(g_params, g_state, z, key, lod):
    return _apply(gen, g_state, g_params, z, True, **generator_kwargs(key, lod))

  def discriminate(d_params, d_state, x, lod, reference=None):
    kwargs = {"lod": lod} if d_style else {}
    if reference is not None and m.minibatch_kernels:  # the only batch features compared with it
      kwargs["reference"] = reference
    return _apply(disc, d_state, d_params, x, True, **kwargs)

  def lod_of(step):
    if not m.progressive:
      return 0.0
    return stylegan.lod_schedule(step, levels, m.progressive_steps)

  def real_view(x, lod):
    return stylegan.progressive_image(x, lod, levels) if m.progressive else x

  players = Players(generate=generate, discriminate=discriminate,
                    pack=lambda x: pack_examples(x, g.pack), latent=latent, real_view=real_view,
                    lod=lod_of)
  settings = Settings(objective=g.objective, n_critic=g.n_critic, unrolled_steps=g.unrolled_steps,
                      gp_weight=g.gp_weight, r1_gamma=g.r1_gamma, r1_every=g.get("r1_every", 1),
                      weight_clip=g.weight_clip,
                      penalty_per_example=g.get("penalty_per_example", True))
  two_player = build_two_player_update(players, settings, g_tx, d_tx, field, (g_sched, d_sched),
                                       unroll_tx)

  def two_player_with_progress(params, opt_state, mutable, batch, key, step):
    params, opt_state, mutable, metrics = two_player(params, opt_state, mutable, batch, key, step)
    if m.progressive:  # the level of detail the next sample is drawn at
      mutable = dict(mutable, lod=jnp.asarray(lod_of(step + 1), jnp.float32))
    return params, opt_state, mutable, metrics

  def init(key):
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((1, g.latent_dim), jnp.float32)
    gv = gen.init({"params": g_key}, z, False)
    x = pack_examples(jnp.zeros((g.pack,) + shape, jnp.float32), g.pack)
    dv = disc.init({"params": d_key}, x, False)
    split = lambda v: ({k: c for k, c in v.items() if k != "params"})
    variables = {"params": {"generator": gv["params"], "discriminator": dv["params"]},
                 "generator": split(gv), "discriminator": split(dv)}
    if m.progressive:
      variables["lod"] = jnp.float32(levels - 1)
    return variables

  def resolve_batch_norm(batch_norm):
    if batch_norm in (None, "auto"):
      return bn_mode
    if batch_norm not in BATCH_NORM_MODES:
      raise ConfigError(f"--batch-norm must be one of {', '.join(BATCH_NORM_MODES)}, not '{batch_norm}'.")
    return batch_norm

  def generator_output(params, mutable, z, key, truncation, batch_norm=None):
    g_params, g_state = params["generator"], mutable["generator"]
    if is_style:
      lod = mutable.get("lod", 0.0)
      return gen.apply({"params": g_params, **g_state}, z, False, key=key, lod=lod,
                       truncation=truncation)
    mode = resolve_batch_norm(batch_norm)
    if mode == "batch" and "batch_stats" in g_state:
      return _apply(gen, g_state, g_params, z, True)[0]
    if mode == "standing" and "batch_stats" in g_state:
      stats = standing_batch_stats(gen, g_params, g_state, g.latent_dim, smp.standing_batches,
                                   smp.standing_batch_size)
      g_state = dict(g_state, batch_stats=stats)
    return gen.apply({"params": g_params, **g_state}, z, False)

  def check_options(options):
    given = {k: v for k, v in options.items() if v is not None and k != "trajectory_every"}
    if given or options.get("trajectory_every"):
      raise ConfigError(f"A GAN samples in one generator call: the options {', '.join(given) or 'trajectory'} "
                        "(samplers, steps, guidance, labels, trajectories) do not apply. Use "
                        "--truncation for StyleGAN.")

  def resolve_truncation(truncation):
    psi = smp.truncation if truncation is None else truncation
    if not is_style and not (isinstance(psi, (int, float)) and psi == 1.0):
      raise ConfigError("Truncation (--truncation / sample.truncation) is StyleGAN's trick "
                        "(model.name=stylegan); other generators sample with 1.")
    return psi

  def sample(params, mutable, key, num, truncation=None, batch_norm=None, **options):
    """num samples from latents drawn from key (the same key, the same samples); batch_norm
    overrides sample.batch_norm (running | batch | standing)."""
    check_options(options)
    psi = resolve_truncation(truncation)
    z_key, noise_key = jax.random.split(key)
    return generator_output(params, mutable, latent(z_key, num), noise_key, psi, batch_norm)

  interpolation = smp.interpolation if smp.interpolation != "auto" else ("w" if is_style else "z")

  def interpolate(params, mutable, key, rows, cols, truncation=None, batch_norm=None):
    """rows x cols samples, row-major, each row from one latent to another: in z by slerp
    (Gaussian latents keep their norm on the great circle; White 2016), or for StyleGAN in W by
    linear interpolation of the (truncated) styles (Karras et al. 2019). One noise image per layer
    for the whole grid: along a row only the latent changes."""
    psi = resolve_truncation(truncation)
    k0, k1, noise_key = jax.random.split(key, 3)
    z0, z1 = latent(k0, rows), latent(k1, rows)
    t = jnp.linspace(0.0, 1.0, cols)
    variables = {"params": params["generator"], **mutable["generator"]}
    if interpolation == "z":
      z = jax.vmap(lambda ti: slerp(z0, z1, ti))(t)            # [cols, rows, latent]
      z = jnp.swapaxes(z, 0, 1).reshape(rows * cols, g.latent_dim)
      if not is_style:
        return generator_output(params, mutable, z, noise_key, psi, batch_norm)
      ws = gen.apply(variables, z, psi, method=gen.styles)
    else:
      w0, w1 = (gen.apply(variables, zi, psi, method=gen.styles) for zi in (z0, z1))
      ws = w0[:, None] + t[None, :, None, None] * (w1 - w0)[:, None]   # [rows, cols, layers, w]
      ws = ws.reshape((rows * cols,) + ws.shape[2:])
    return gen.apply(variables, ws, noise_key, mutable.get("lod", 0.0), True, method=gen.synthesize)

  joint = optax.GradientTransformation(
      init=lambda p: {"generator": g_tx.init(p["generator"]), "discriminator": d_tx.init(p["discriminator"])},
      update=_no_joint_update)
  return method_lib.Method(name="gan", model=gen, init=init, loss=_no_single_loss, sample=sample,
                           optimizer=joint, update=two_player_with_progress, interpolate=interpolate)


def _no_single_loss(*args):
  raise TypeError("A GAN has no single loss; the engine runs its two-player update (Method.update).")


def _no_joint_update(*args):
  raise TypeError("The GAN's players update separately, inside Method.update.")


method_lib.register("gan", build, validate)
