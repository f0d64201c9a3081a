"""Time grids: the decreasing noise levels a sampler visits (numpy, computed once per call site).

- `karras`: EDM's rho-spaced sigmas (Karras et al. 2022, eq. 5), then 0.
- `log_snr_uniform`: sigmas uniform in log sigma (DPM-Solver's "logSNR" steps), then 0.
- `timestep_sigmas`: the sigmas of a subsequence of a discrete model's T timesteps, then 0, with the
  subsequence chosen by `spaced_timesteps`: "linear" (evenly spaced, both ends kept: improved DDPM's
  respacing), "leading" (DDIM's tau_i = floor(i T / K)), "quadratic" (DDIM's tau_i ~ c i^2) or
  "trailing" (Lin et al. 2024: counted back from T - 1, so the first step starts at full noise).
- `flow_times`: t in [t_min, 1] for the flow integrators (t = 1: data), optionally with Stable
  Diffusion 3's shift; `sigmas_to_flow_times` / `flow_times_to_sigmas` convert (t = 1 / (1 + sigma)).
- `stop_at`: the grid cut at a noise level, for early stopping.
"""

from __future__ import annotations

import numpy as np

from jaxgen.diffusion.schedules import karras_sigmas, spaced_timesteps as linear_timesteps

SPACINGS = ("linear", "leading", "quadratic", "trailing")


def karras(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
           rho: float = 7.0) -> np.ndarray:
  """K = num_steps intervals: K rho-spaced levels from sigma_max down to sigma_min, then 0."""
  return karras_sigmas(num_steps, sigma_min, sigma_max, rho).astype(np.float32)


def log_snr_uniform(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> np.ndarray:
  """K levels uniform in log sigma (= uniform in half-log-SNR lambda, DPM-Solver's "logSNR" time
  steps) from sigma_max down to sigma_min, then 0."""
  if num_steps < 1 or not 0 < sigma_min < sigma_max:
    raise ValueError(f"log_snr_uniform needs num_steps >= 1 and 0 < sigma_min < sigma_max; got "
                     f"{num_steps}, {sigma_min}, {sigma_max}")
  levels = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_steps)) if num_steps > 1 \
      else np.array([sigma_max])
  return np.append(levels, 0.0).astype(np.float32)


def spaced_timesteps(num_timesteps: int, steps: int, spacing: str = "linear") -> np.ndarray:
  """`steps` strictly increasing indices into [0, T) under the named spacing."""
  T = num_timesteps
  if not 1 <= steps <= T:
    raise ValueError(f"steps must lie in [1, {T}], got {steps}")
  if spacing == "linear":
    return linear_timesteps(T, steps)
  if spacing == "leading":
    ts = np.floor(np.arange(steps) * (T / steps)).astype(np.int64)
  elif spacing == "trailing":
    ts = np.round(np.arange(T, 0, -T / steps)).astype(np.int64)[::-1] - 1
  elif spacing == "quadratic":
    ts = np.floor(np.linspace(0.0, np.sqrt(T - 1), steps) ** 2).astype(np.int64)
  else:
    raise ValueError(f"spacing must be one of {SPACINGS}, not '{spacing}'")
  ts = np.clip(ts, 0, T - 1)
  # Make the sequence strictly increasing (quadratic spacing repeats small indices when K is
  # large): push each repeat one past its predecessor, then pull the tail back under T.
  for i in range(1, steps):
    ts[i] = max(ts[i], ts[i - 1] + 1)
  for i in range(steps - 1, -1, -1):
    ts[i] = min(ts[i], T - 1 - (steps - 1 - i))
  return ts


def timestep_sigmas(table_sigmas, timesteps) -> np.ndarray:
  """[sigma_{t_K}, ..., sigma_{t_1}, 0] for increasing `timesteps` of a discrete schedule whose
  per-timestep sigmas are `table_sigmas` (`DiscreteSchedule.sigmas`)."""
  table = np.asarray(table_sigmas, np.float64)
  return np.append(table[np.asarray(timesteps)][::-1], 0.0).astype(np.float32)


def flow_times(num_steps: int, t_min: float = 0.0, shift: float = 1.0) -> np.ndarray:
  """K + 1 increasing times from t_min (noise) to 1 (data), uniform in t before the shift.
  shift > 1 spends more steps at high noise (Esser et al. 2024, eq. 23, written for t = 1 - t_SD3):
  t' = t / (t + shift (1 - t))."""
  if num_steps < 1 or not 0.0 <= t_min < 1.0 or shift <= 0:
    raise ValueError(f"flow_times needs num_steps >= 1, 0 <= t_min < 1, shift > 0; got {num_steps}, "
                     f"{t_min}, {shift}")
  t = np.linspace(t_min, 1.0, num_steps + 1)
  return (t / (t + shift * (1.0 - t))).astype(np.float32)


def sigmas_to_flow_times(sigmas) -> np.ndarray:
  """The rectified-flow time with the same signal-to-noise ratio: x_t = t x_data + (1 - t) noise
  has sigma = (1 - t) / t, so t = 1 / (1 + sigma)."""
  return (1.0 / (1.0 + np.asarray(sigmas, np.float64))).astype(np.float32)


def flow_times_to_sigmas(ts) -> np.ndarray:
  ts = np.asarray(ts, np.float64)
  with np.errstate(divide="ignore"):
    return np.where(ts > 0, (1.0 - ts) / np.maximum(ts, 1e-300), np.inf).astype(np.float32)


def stop_at(sigmas, sigma_stop: float) -> np.ndarray:
  """The grid's levels above sigma_stop, then sigma_stop itself: a sampler run on it stops there and
  returns the partially denoised x (and, as `SamplerOutput.x0`, its x_0 estimate)."""
  sigmas = np.asarray(sigmas, np.float32)
  kept = sigmas[sigmas > sigma_stop]
  if len(kept) == 0:
    raise ValueError(f"sigma_stop={sigma_stop} is above the grid's first level {sigmas[0]}")
  return np.append(kept, np.float32(sigma_stop)).astype(np.float32)
