"""Every sampler by name, behind one call: `run(name, denoise, sigmas, noise, key, **options)`.

All entries take the denoiser D(x, sigma) of `core` and a noise grid (`grids`), start from `noise`
already at scale sigma_0 (x_K = sigma_0 z for a grid from sigma_0), and return a `SamplerOutput` in
the same coordinates. The flow integrators run on the equivalent rectified-flow times
t = 1 / (1 + sigma) with the denoiser's velocity (`adapters.denoiser_velocity`); their trajectory is
mapped back to these coordinates. `nfe(name, sigmas, **options)` is the exact number of model
evaluations a run makes on that grid; `steps_for_nfe` inverts it for the benchmark.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxgen.samplers import adapters, ancestral, consistency, dpm_solver, edm, flow, unipc
from jaxgen.samplers.core import SamplerOutput


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
  name: str
  run: Callable              # (denoise, sigmas, noise, key, **options) -> SamplerOutput
  evals_per_step: int        # model evaluations per grid interval
  final_step_evals: int      # evaluations of a step to sigma = 0
  stochastic: bool           # draws noise by default
  options: tuple[str, ...]   # the keyword options it takes (besides extra_args, trajectory)
  summary: str
  count_nfe: Callable | None = None  # (sigmas, **options) -> NFE, when it varies per step

  def nfe(self, sigmas, **options) -> int:
    sigmas = np.asarray(sigmas)
    if self.count_nfe is not None:
      return self.count_nfe(sigmas, **options)
    steps = len(sigmas) - 1
    ends_at_zero = float(sigmas[-1]) == 0.0
    return (self.evals_per_step * (steps - ends_at_zero)
            + (self.final_step_evals if ends_at_zero else 0))


def _flow(method: str):
  def run(denoise, sigmas, noise, key=None, *, extra_args=None, trajectory=False, **options):
    sigmas = jnp.asarray(sigmas, jnp.float32)
    ts = 1.0 / (1.0 + sigmas)
    fn = getattr(flow, f"flow_{method}")
    out = fn(adapters.denoiser_velocity(denoise), ts, ts[0] * noise, key, extra_args=extra_args,
             trajectory=trajectory, **options)
    if not trajectory:
      return SamplerOutput(out.x / ts[-1], out.x0, None, None)
    scale = ts.reshape((-1,) + (1,) * noise.ndim)
    return SamplerOutput(out.x / ts[-1], out.x0, out.trajectory / scale, out.x0_trajectory)
  return run


def _partial(fn, **fixed):
  def run(denoise, sigmas, noise, key=None, **options):
    return fn(denoise, sigmas, noise, key, **{**fixed, **options})
  return run


SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in [
    SamplerSpec("ddpm", ancestral.ddpm, 1, 1, True, ("variance",),
                "DDPM ancestral (fixed_small / fixed_large / learned variance)"),
    SamplerSpec("ddim", ancestral.ddim, 1, 1, False, ("eta",),
                "DDIM; eta=0 deterministic, eta=1 ancestral"),
    SamplerSpec("euler_ancestral", ancestral.euler_ancestral, 1, 1, True, ("eta",),
                "Euler ancestral (= DDIM with eta, default 1)"),
    SamplerSpec("euler", edm.euler, 1, 1, False, ("s_churn", "s_tmin", "s_tmax", "s_noise"),
                "Euler on the probability-flow ODE, EDM churn optional"),
    SamplerSpec("heun", edm.heun, 2, 1, False, ("s_churn", "s_tmin", "s_tmax", "s_noise"),
                "EDM's Heun (2nd order), churn optional"),
    SamplerSpec("dpm_solver_2", _partial(dpm_solver.dpm_solver, order=2), 2, 1, False,
                ("lower_order_final",), "DPM-Solver-2, singlestep",
                lambda sigmas, lower_order_final=True: dpm_solver.dpm_solver_nfe(sigmas, 2, lower_order_final)),
    SamplerSpec("dpm_solver_3", _partial(dpm_solver.dpm_solver, order=3), 3, 1, False,
                ("lower_order_final",), "DPM-Solver-3, singlestep",
                lambda sigmas, lower_order_final=True: dpm_solver.dpm_solver_nfe(sigmas, 3, lower_order_final)),
    SamplerSpec("dpmpp_2m", _partial(dpm_solver.dpmpp_multistep, order=2), 1, 1, False,
                ("lower_order_final",), "DPM-Solver++(2M)"),
    SamplerSpec("dpmpp_3m", _partial(dpm_solver.dpmpp_multistep, order=3), 1, 1, False,
                ("lower_order_final",), "DPM-Solver++(3M)"),
    SamplerSpec("dpmpp_2m_sde", _partial(dpm_solver.dpmpp_multistep, order=2, eta=1.0), 1, 1, True,
                ("eta", "lower_order_final"), "SDE-DPM-Solver++(2M)"),
    SamplerSpec("dpmpp_3m_sde", _partial(dpm_solver.dpmpp_multistep, order=3, eta=1.0), 1, 1, True,
                ("eta", "lower_order_final"), "SDE-DPM-Solver++(3M)"),
    SamplerSpec("unipc_2", _partial(unipc.unipc, order=2), 1, 1, False, ("lower_order_final",),
                "UniPC-2 (B2): 2nd-order predictor + corrector, 3rd order"),
    SamplerSpec("unipc_3", _partial(unipc.unipc, order=3), 1, 1, False, ("lower_order_final",),
                "UniPC-3 (B2): 3rd-order predictor + corrector, 4th order"),
    SamplerSpec("unipc_2_bh1", _partial(unipc.unipc, order=2, b_h="bh1"), 1, 1, False,
                ("lower_order_final",), "UniPC-2 with B1(h) = h: 2nd-order predictor + corrector, 3rd order"),
    SamplerSpec("unipc_3_bh1", _partial(unipc.unipc, order=3, b_h="bh1"), 1, 1, False,
                ("lower_order_final",), "UniPC-3 with B1(h) = h: 3rd-order predictor + corrector, 4th order"),
    SamplerSpec("consistency", consistency.consistency, 1, 1, True, ("sigma_min",),
                "multistep consistency sampling (a consistency model: 1 evaluation per level)"),
    SamplerSpec("flow_euler", _flow("euler"), 1, 1, False, (), "Euler in rectified-flow time"),
    SamplerSpec("flow_heun", _flow("heun"), 2, 1, False, (), "Heun in rectified-flow time"),
    SamplerSpec("flow_midpoint", _flow("midpoint"), 2, 2, False, (), "midpoint in rectified-flow time"),
]}

# Samplers for one kind of model only (a consistency function, not a denoiser): the sampler
# benchmark's exact-denoiser problems leave them out unless named.
MODEL_SPECIFIC = ("consistency",)

# The DDPM sampler's name in earlier releases.
ALIASES = {"ancestral": "ddpm"}


def get(name: str) -> SamplerSpec:
  name = ALIASES.get(name, name)
  if name not in SAMPLERS:
    raise ValueError(f"unknown sampler '{name}'; choose one of {', '.join(SAMPLERS)}")
  return SAMPLERS[name]


def run(name: str, denoise: Callable, sigmas, noise, key=None, **options) -> SamplerOutput:
  spec = get(name)
  unknown = set(options) - set(spec.options) - {"extra_args", "trajectory"}
  if unknown:
    raise ValueError(f"sampler '{spec.name}' takes no option(s) {', '.join(sorted(unknown))}; "
                     f"it takes {', '.join(spec.options) or 'none'}")
  return spec.run(denoise, sigmas, noise, key, **options)


def nfe(name: str, sigmas, **options) -> int:
  return get(name).nfe(sigmas, **options)


def steps_for_nfe(name: str, target_nfe: int, **options) -> int:
  """The most grid intervals K (grid ending at 0) whose NFE is at most target_nfe (at least 1)."""
  spec = get(name)
  best = 1
  for steps in range(1, target_nfe + 1):
    if spec.nfe(np.append(np.linspace(2.0, 1.0, steps), 0.0), **options) <= target_nfe:
      best = steps
  return best
