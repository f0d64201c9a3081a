"""Which config changes a checkpoint may be continued under (jaxgen.train.resume), on plain config
dicts: the rates compared are the schedules' closed forms (jaxgen.train.optim)."""

import pytest

from jaxgen.errors import CheckpointError
from jaxgen.train.resume import check_continuation, differences


def _optimizer(**values):
  return {"name": "adam", "lr": 1e-3, "b1": 0.9, "warmup_steps": 0, "schedule": "constant",
          "final_lr_frac": 1.0, "decay_steps": 0, **values}


def _config(steps=10, **sections):
  c = {"model": {"width": 8, "depth": 2}, "train": {"steps": steps, "log_every": 5},
       "optimizer": _optimizer()}
  c.update(sections)
  return c


def test_the_same_config_a_longer_constant_run_and_bookkeeping_pass():
  check_continuation(_config(), _config(), 10, where="w")
  check_continuation(_config(), _config(steps=30), 10, where="w")
  longer_logs = _config()
  longer_logs["train"]["log_every"] = 1
  check_continuation(_config(), longer_logs, 10, where="w", bookkeeping=("train.log_every",))
  with pytest.raises(CheckpointError, match=r"differs in train\.log_every\)"):
    check_continuation(_config(), longer_logs, 10, where="w")


def test_another_setting_is_refused_naming_every_differing_key_and_the_fix():
  other = _config(model={"width": 16, "depth": 2, "extra": True})
  other["optimizer"]["b1"] = 0.5
  with pytest.raises(CheckpointError, match=r"in 'w' was trained with another config \(differs in "
                                            r"model\.extra, model\.width, optimizer\.b1\)\. Use the "
                                            r"config it was started with, or pass --flag\."):
    check_continuation(_config(), other, 10, where="w", fix="pass --flag")
  assert sorted(differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3]}, "d": 0})) == ["a.c", "d"]


def test_a_cooldown_after_the_steps_taken_passes_and_one_reaching_back_is_refused():
  cooldown = _config(steps=20, optimizer=_optimizer(schedule="linear", final_lr_frac=0.0, decay_steps=10))
  check_continuation(_config(), cooldown, 10, where="w")  # held at lr for steps 0-9
  # Decaying over the last 12 of 20 steps starts at step 8 with lr itself; the rates first differ
  # at step 9: lr (1 - 1/12).
  reaching = _config(steps=20, optimizer=_optimizer(schedule="linear", final_lr_frac=0.0, decay_steps=12))
  with pytest.raises(CheckpointError, match=r"is at step 10, .* differs from the one it was trained "
                                            r"with at step 9 \(0\.000916667 instead of 0\.001\)"):
    check_continuation(_config(), reaching, 10, where="w")


def test_a_whole_run_cosine_cannot_be_lengthened_nor_a_player_section_appear():
  cosine = lambda steps: _config(steps=steps, optimizer=_optimizer(schedule="cosine", final_lr_frac=0.0))
  check_continuation(cosine(10), cosine(10), 10, where="w")
  # cos decays over all steps: at step 1, 1e-3 (1 + cos(pi / 10)) / 2 against (1 + cos(pi / 20)) / 2.
  with pytest.raises(CheckpointError, match=r"at step 1 \(0\.000993844 instead of 0\.000975528\)"):
    check_continuation(cosine(10), cosine(20), 10, where="w")
  with pytest.raises(CheckpointError, match=r"another config \(differs in d_optimizer\)"):
    check_continuation(_config(), _config(d_optimizer=_optimizer()), 10, where="w")
