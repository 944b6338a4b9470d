"""Every shipped config file loads as the CLI loads it (ml_collections' config_flags, locked) and validates."""

from __future__ import annotations

import glob
import importlib.util
import os
import re

import pytest
from absl import flags
from ml_collections import config_flags

from lm_jax import config as config_lib, finetuning
from lm_jax.classify import config as classify_config
from lm_jax.models import registry

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
  if os.path.basename(argument).startswith("classify_"):  # lm-jax-classify's configs
    classify_config.validate(config)
    assert config.data.source in ("mr", "sst", "sst2", "trec", "imdb", "synthetic")
  else:
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


def _changed(value):
  """A value of the same type as the default `value`, different from it and valid for its field."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1 if isinstance(value, int) else round(value / 2 + 0.25, 3)
  return {"lstm": "gru", "uniform": "identity"}.get(value, value + "x")


FOREIGN_FIELDS = [(kind, name) for kind, family in registry.FAMILIES.items()
                  for name in config_lib.reference_config().model if name not in registry.family_fields(family)]


def test_every_model_field_belongs_to_a_family_and_each_family_leaves_some_out():
  defaults = config_lib.reference_config().model
  assert set(defaults) == set().union(*(registry.family_fields(f) for f in registry.FAMILIES.values()))
  assert {kind for kind, _ in FOREIGN_FIELDS} == set(registry.FAMILIES)
  assert ("transformer", "wdrop") in FOREIGN_FIELDS and ("rnn", "nhead") in FOREIGN_FIELDS


@pytest.mark.parametrize("kind, name", FOREIGN_FIELDS)
def test_a_field_the_family_does_not_use_set_away_from_its_default_is_refused(kind, name):
  config = config_lib.reference_config()
  config.model.kind = kind
  config_lib.validate(config)  # at its default it is harmless
  config.model[name] = _changed(config.model[name])
  with pytest.raises(config_lib.UserError, match=rf"^config.model.{name} is not used by the {kind} family \(it is "
                                                  rf"\w+'s\); drop it, or pass --config.model.kind=\w+$"):
    config_lib.validate(config)


@pytest.mark.parametrize("field, reads", [("tar_beta", "top_raw_TxBxH")])
def test_a_regulariser_reading_an_output_the_family_lacks_is_refused(field, reads):
  config = config_lib.reference_config()
  config.model.kind = "transformer"
  config[field] = 1.0
  with pytest.raises(config_lib.UserError, match=rf"config.{field} .* reads the model's {reads}, which the transformer"):
    config_lib.validate(config)
  config.model.kind = "rnn"
  config_lib.validate(config)


def _config_module(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("corpus", list(_config_module("classify_ulmfit").CORPORA))
def test_each_ulmfit_classifier_has_the_epochs_its_gradual_unfreezing_needs(corpus):
  # The encoder is configs/ulmfit.py's LM: its groups are the embedding, each layer and the head. Checked here
  # because lm-jax-classify can only check it once the LM it reads exists.
  groups = _config_module("ulmfit").get_config().model.nlayers + 2
  config = _config_module("classify_ulmfit").get_config(corpus)
  finetuning.validate_unfreezing(config.optim, config.epochs, groups)
