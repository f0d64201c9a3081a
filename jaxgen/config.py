"""Experiment configs: loading `experiments/<name>.py`, command-line overrides, validation.

A config file defines `get_config()` returning an `ml_collections.ConfigDict`. Overrides arrive as
`--config.a.b=value` and must name an existing key; the value is parsed to the type the config file
gave that key. Everything here runs before JAX compiles anything, so a typo costs milliseconds.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import pathlib
from typing import Any, Callable, Sequence

import ml_collections

from jaxgen.errors import ConfigError

REQUIRED_KEYS = ("seed", "train.steps", "train.batch_size", "train.log_every", "train.checkpoint_every")


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Imports a config file and returns its `get_config()`."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ConfigError(f"Config file '{path}' does not exist. Pass the path of a Python file that "
                      "defines get_config(), e.g. --config experiments/ddpm_digits.py.")
  spec = importlib.util.spec_from_file_location(f"jaxgen_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # A config file is user code: report its error as a config problem.
    raise ConfigError(f"Config file '{path}' failed to import: {type(e).__name__}: {e}. "
                      "Fix the file so that it imports cleanly.") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"Config file '{path}' has no get_config() function. Define "
                      "get_config() returning an ml_collections.ConfigDict.")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() in '{path}' returned {type(config).__name__}, "
                      "not an ml_collections.ConfigDict.")
  return config


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Dotted key -> leaf value."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def _parse_bool(text: str) -> bool:
  lowered = text.strip().lower()
  if lowered in ("true", "1", "yes", "on"):
    return True
  if lowered in ("false", "0", "no", "off"):
    return False
  raise ValueError(f"'{text}' is not a boolean (use true or false)")


def _coerce(value: Any, like: Any) -> Any:
  """Converts `value` to the type of `like`; raises ValueError when it does not fit."""
  if isinstance(like, bool):
    return value if isinstance(value, bool) else _parse_bool(str(value))
  if isinstance(like, int):
    if isinstance(value, bool):
      raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
    return int(str(value).strip())
  if isinstance(like, float):
    if isinstance(value, bool):
      raise ValueError("a boolean is not a number")
    return float(value)
  if isinstance(like, str):
    return str(value)
  if isinstance(like, (tuple, list)):
    if isinstance(value, str):
      text = value.strip()
      if text == "":
        value = ()
      else:
        value = ast.literal_eval(text if text[0] in "([" else f"({text},)")
    if not isinstance(value, (tuple, list)):
      value = (value,)
    if like:
      value = [_coerce(v, like[0]) for v in value]
    return type(like)(value)
  if like is None:
    if isinstance(value, str):
      try:
        return ast.literal_eval(value)
      except (ValueError, SyntaxError):
        return value
    return value
  raise ValueError(f"cannot override a value of type {type(like).__name__}")


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
  """Sets dotted keys; unknown keys and values of the wrong type raise ConfigError naming the key."""
  known = flatten(config)
  for key, raw in overrides.items():
    if key not in known:
      close = difflib.get_close_matches(key, known.keys(), n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise ConfigError(f"Unknown config key '{key}'.{hint} Keys must exist in the config file; "
                        "run `jaxgen info --config FILE --show-config` to list them.")
    like = known[key]
    try:
      value = _coerce(raw, like)
    except (ValueError, SyntaxError, TypeError) as e:
      raise ConfigError(f"Config key '{key}' expects a value of type {type(like).__name__} "
                        f"(the config file has {like!r}), got {raw!r}: {e}.") from None
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[leaf] = value


def parse_override_args(args: Sequence[str]) -> dict[str, str]:
  """`--config.a.b=v` or `--config.a.b v` -> {'a.b': 'v'}; anything else is an error."""
  overrides, i = {}, 0
  args = list(args)
  while i < len(args):
    arg = args[i]
    if not arg.startswith("--config."):
      raise ConfigError(f"Unrecognised argument '{arg}'. Config overrides look like "
                        "--config.train.steps=100.")
    body = arg[len("--config."):]
    if "=" in body:
      key, value = body.split("=", 1)
    elif i + 1 < len(args) and not args[i + 1].startswith("--"):
      key, value = body, args[i + 1]
      i += 1
    else:
      raise ConfigError(f"Override '{arg}' has no value. Write it as --config.{body}=VALUE.")
    overrides[key] = value
    i += 1
  return overrides


def _require(cond: bool, key: str, message: str) -> None:
  if not cond:
    raise ConfigError(f"Config key '{key}' {message}")


def validate_common(config: ml_collections.ConfigDict) -> None:
  """Checks the keys every training config has."""
  known = flatten(config)
  for key in REQUIRED_KEYS:
    if key not in known:
      raise ConfigError(f"The config has no '{key}'. Every training config needs "
                        f"{', '.join(REQUIRED_KEYS)}.")
  t = config.train
  _require(isinstance(config.seed, int) and config.seed >= 0, "seed", "must be an integer >= 0.")
  for key in ("steps", "batch_size", "log_every", "checkpoint_every"):
    _require(isinstance(t[key], int) and t[key] > 0, f"train.{key}",
             f"must be a positive integer, got {t[key]!r}.")
  steps_per_call = t.get("steps_per_call", 1)
  accum = t.get("grad_accum_steps", 1)
  _require(steps_per_call >= 1, "train.steps_per_call", "must be >= 1.")
  _require(accum >= 1, "train.grad_accum_steps", "must be >= 1.")
  _require(t.batch_size % accum == 0, "train.grad_accum_steps",
           f"({accum}) must divide train.batch_size ({t.batch_size}).")
  for key in ("log_every", "checkpoint_every", "steps"):
    _require(t[key] % steps_per_call == 0, f"train.{key}",
             f"({t[key]}) must be a multiple of train.steps_per_call ({steps_per_call}), "
             "because steps run in groups of that size.")
  if t.get("sample_every", 0):
    _require(t.sample_every % steps_per_call == 0, "train.sample_every",
             f"must be a multiple of train.steps_per_call ({steps_per_call}).")
  ema = t.get("ema_decay", 0.0)
  _require(0.0 <= ema < 1.0, "train.ema_decay", f"must lie in [0, 1), got {ema}.")
  warmup = t.get("ema_warmup", False)
  _require(isinstance(warmup, bool), "train.ema_warmup",
           f"must be true or false (the EMA's decay min(decay, (1 + n) / (10 + n))), got {warmup!r}.")


def to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json(sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a config saved with a checkpoint (lists come back as tuples, as config files write them)."""
  def tuples(x):
    if isinstance(x, dict):
      return {k: tuples(v) for k, v in x.items()}
    if isinstance(x, list):
      return tuple(tuples(v) for v in x)
    return x
  return ml_collections.ConfigDict(tuples(json.loads(text)))


def section(config: ml_collections.ConfigDict, name: str, defaults: Callable) -> ml_collections.ConfigDict:
  """config[name] over `defaults()`: every key a method reads, with the defaults for keys an older
  (or shorter) config leaves out."""
  out = defaults()
  out.update(config.get(name, ml_collections.ConfigDict()).to_dict())
  return out
