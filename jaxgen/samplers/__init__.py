"""Samplers: one `lax.scan` each over a noise grid, any model through a denoiser D(x, sigma).

See `core` for the coordinates and the model protocol, `grids` for time grids, `adapters` for
eps / x0 / v / EDM / velocity models and guidance, `registry` for the samplers by name.
"""

from jaxgen.samplers import adapters, grids
from jaxgen.samplers.core import SamplerOutput
from jaxgen.samplers.registry import SAMPLERS, nfe, run, steps_for_nfe

__all__ = ["SAMPLERS", "SamplerOutput", "adapters", "grids", "nfe", "run", "steps_for_nfe"]
