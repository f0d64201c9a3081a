"""Checks that the registry's DDPM sampler reproduces the earlier respaced ancestral sampler.

    python experiments/ddpm_sampler_equivalence.py WORKDIR

Runs both on 16 samples of WORKDIR's model (online parameters; 250 linearly spaced steps,
fixed_large variance, x0 clipped) from the same noise and the same per-step keys. The earlier
sampler is restated here from `ddpm.p_mean_log_variance` on the respaced schedule. Prints the
largest difference. BENCHMARKS.md quotes 1.6e-5 on the shapes cosine/v run.
"""
import jax, jax.numpy as jnp, numpy as np
from jaxgen.cli import restore_run
from jaxgen.diffusion import ddpm
from jaxgen.diffusion.schedules import DiscreteSchedule, respace_betas, spaced_timesteps
from jaxgen.diffusion import method as M
import sys
workdir = sys.argv[1] if len(sys.argv) > 1 else "runs/variants_s1000/ddpm_shapes_cosine_v"
trainer, state, params, step = restore_run(workdir, "online")
c = trainer.config
d = M._diff(c); smp = M._sample_cfg(c)
betas = M._betas(d)
net = M.Network(c, trainer.method.model)
fn = net.guided(params, None, 1.0)
ts = spaced_timesteps(d.num_timesteps, 250)
rs = DiscreteSchedule.from_betas(respace_betas(betas, ts))
model_t = jnp.asarray(ts, jnp.int32)
key = jax.random.key(0)
noise = jax.random.normal(key, (16, 16, 16, 3))
def old(noise):
  variance = ddpm.resolve_variance(rs, "fixed_large")
  def stepf(x, t):
    tb = jnp.full((x.shape[0],), t, jnp.int32)
    pred = ddpm.predict(fn, rs, x, tb, prediction=d.prediction, sigma_data=d.sigma_data, model_t=model_t[tb])
    mean, log_var, _ = ddpm.p_mean_log_variance(rs, pred, x, tb, variance=variance, clip_x0=True)
    z = jax.random.normal(jax.random.fold_in(key, 249 - t), x.shape)
    x = mean + (t > 0).astype(x.dtype) * jnp.exp(0.5 * log_var) * z
    return x, None
  return jax.lax.scan(stepf, noise, jnp.arange(249, -1, -1))[0]
from jaxgen.samplers import adapters, grids, ancestral
sig = grids.timestep_sigmas(DiscreteSchedule.from_betas(betas).sigmas, ts)
den = adapters.clip_x0(adapters.discrete_denoiser(fn, DiscreteSchedule.from_betas(betas), d.prediction, d.sigma_data))
new = ancestral.ddpm(den, jnp.asarray(sig), noise * sig[0], key, variance="fixed_large").x
o = jax.jit(old)(noise)
print("max diff", float(jnp.max(jnp.abs(o - new))), "std", float(o.std()), float(new.std()))
