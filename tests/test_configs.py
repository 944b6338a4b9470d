"""Every shipped config file loads as the CLI loads it (ml_collections' config_flags, locked) and validates."""

from __future__ import annotations

import glob
import os
import re

import pytest
from absl import flags
from ml_collections import config_flags

from lm_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_the_shipped_configs_are_found():
  assert {os.path.basename(p) for p in CONFIG_FILES} >= {"default.py", "quickstart.py", "ptb_small.py"}


def docstring_config_arguments() -> list[str]:
  """Each file on its own, plus every `--config=configs/NAME.py:RECIPE` its docstring's run commands name."""
  arguments = []
  for path in CONFIG_FILES:
    with open(path) as f:
      recipes = re.findall(rf"--config=configs/{re.escape(os.path.basename(path))}:(\w+)", f.read())
    arguments += [path] + [f"{path}:{recipe}" for recipe in dict.fromkeys(recipes)]
  return arguments


@pytest.mark.parametrize("argument", docstring_config_arguments(), ids=os.path.basename)
def test_shipped_config_loads_through_config_flags_and_validates(argument):
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True)
  flag_values(["lm-jax-train", f"--config={argument}"])
  config = flag_values.config
  config_lib.validate(config)
  assert config.data.source in ("dir", "hub", "synthetic")


def test_a_saved_config_missing_newer_fields_loads_with_their_defaults():
  saved = config_lib.reference_config().to_dict()
  saved["model"].update(nhid=650, cell="gru")
  del saved["model"]["kind"], saved["optim"]["nonmono"], saved["variable_bptt"]  # written before these existed
  config = config_lib.from_saved(saved)
  assert (config.model.kind, config.optim.nonmono, config.variable_bptt) == ("rnn", 5, False)
  assert (config.model.nhid, config.model.cell) == (650, "gru")


def test_a_saved_config_with_a_field_this_version_lacks_is_one_line():
  saved = config_lib.reference_config().to_dict()
  saved["model"]["highway"] = True
  with pytest.raises(config_lib.UserError, match="does not fit this version of lm_jax"):
    config_lib.from_saved(saved)
