import pytest

from jaxgen import config as config_lib
from jaxgen.errors import ConfigError
from conftest import REPO, TINY


def load():
  return config_lib.load_config_file(REPO / "experiments" / "ddpm_digits.py")


def test_overrides_are_parsed_to_the_config_files_types():
  c = load()
  config_lib.apply_overrides(c, config_lib.parse_override_args(
      ["--config.train.steps=7", "--config.optimizer.lr", "3e-4", "--config.model.remat=true",
       "--config.model.ch_mult=(1,2,4)", "--config.model.attn_resolutions=()", "--config.data.name=shapes",
       "--config.train.ema_warmup=true"]))
  assert c.train.steps == 7 and isinstance(c.train.steps, int)
  assert c.optimizer.lr == 3e-4
  assert c.model.remat is True
  assert c.model.ch_mult == (1, 2, 4)
  assert c.model.attn_resolutions == ()
  assert c.data.name == "shapes"
  assert c.train.ema_warmup is True


@pytest.mark.parametrize("arg, fragment", [
    ("--config.train.stepz=3", "Unknown config key 'train.stepz'"),
    ("--config.train.steps=ten", "'train.steps' expects a value of type int"),
    ("--config.train.steps=2.5", "'train.steps' expects a value of type int"),
    ("--config.model.remat=maybe", "'model.remat' expects a value of type bool"),
    ("--config.model.ch_mult=(1,x)", "'model.ch_mult'"),
])
def test_bad_overrides_name_the_key(arg, fragment):
  c = load()
  with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
    config_lib.apply_overrides(c, config_lib.parse_override_args([arg]))


def test_unknown_key_suggests_close_names():
  with pytest.raises(ConfigError, match="Did you mean train.steps"):
    config_lib.apply_overrides(load(), {"train.step": "1"})


def test_validation_rejects_inconsistent_values():
  c = load()
  c.train.steps_per_call = 3
  with pytest.raises(ConfigError, match="multiple of train.steps_per_call"):
    config_lib.validate_common(c)
  c = load()
  c.train.batch_size = 0
  with pytest.raises(ConfigError, match="train.batch_size"):
    config_lib.validate_common(c)
  c = load()
  with c.train.ignore_type():  # a config file that wrote the flag as a number
    c.train.ema_warmup = 1
  with pytest.raises(ConfigError, match="train.ema_warmup"):
    config_lib.validate_common(c)


def test_missing_config_file_and_json_round_trip(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config_file(tmp_path / "nope.py")
  c = config_lib.load_config_file(TINY)
  back = config_lib.from_json(config_lib.to_json(c))
  assert config_lib.flatten(back) == config_lib.flatten(c)
