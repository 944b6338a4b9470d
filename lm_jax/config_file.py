"""Config files as lm-jax-train reads them: `--config=FILE[:ARG]` and `--config.FIELD=VALUE` overrides,
parsed by ml_collections; what goes wrong there becomes one UserError line (ml_collections raises
tracebacks)."""

from __future__ import annotations

import os
import re
import warnings
from typing import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from lm_jax.errors import UserError

FIELDS_HELP = "the fields are described in lm_jax/config.py"


def load(config_arg: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of `lm-jax-train --config=config_arg *overrides` (each `--config.FIELD=VALUE`), parsed by a
  flag of its own exactly as that command parses it. Raises UserError."""
  argv = ["lm-jax-train", f"--config={config_arg}", *overrides]
  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv, lock_config=True)
  try:
    with warnings.catch_warnings():  # ml_collections loads the file with importlib's deprecated load_module
      warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
      flag_values(argv)
    config.value.get("model")  # A file that failed to load parses as a stand-in that raises when read.
  except flags.Error as e:  # a value its field's type cannot hold
    raise UserError(f"{str(e).splitlines()[0]}; give a value of the field's type ({FIELDS_HELP})") from None
  except (OSError, AttributeError, KeyError) as e:
    raise load_error(argv, e) from None
  return config.value


def load_error(argv: Sequence[str], error: Exception) -> UserError:
  """The one line for what parsing `argv` raised: a config file that cannot be read (OSError), or that sets
  a field the locked config lacks, or an override of such a field (AttributeError, KeyError)."""
  config_path = _config_argument(argv)
  if isinstance(error, OSError):
    file = config_path.split(":", 1)[0]
    problem = "no such file" if not os.path.isfile(file) else str(error).strip().splitlines()[-1].strip()
    return UserError(f"cannot load --config={config_path} ({problem}); pass a config file such as "
                     "configs/default.py")
  return _unknown_field_error(argv, config_path, error)


def _config_argument(argv: Sequence[str]) -> str:
  """The value given to --config (as --config=PATH or --config PATH), for the error messages."""
  for i, arg in enumerate(argv):
    name, equals, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "config":
      return value if equals else (argv[i + 1] if i + 1 < len(argv) else "")
  return ""


def _unknown_field_error(argv: Sequence[str], config_path: str, error: Exception) -> UserError:
  """The one line for ml_collections' (multi-line, nested) error about a field the locked config lacks."""
  while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(message))
    error = error.args[0]
  message = str(error.args[0]) if error.args else str(error)
  field = re.search(r"""^(?:Key )?["']([^"']+)["']""", message)
  name = field.group(1) if field else "?"
  suggestion = re.search(r'Did you mean "([^"]+)"', message)
  hint = f" (did you mean {suggestion.group(1)}?)" if suggestion else ""
  for arg in argv:
    override = arg.split("=", 1)[0].lstrip("-")
    if override.startswith("config.") and name in override.split(".")[1:]:
      return UserError(f"--{override}: the config has no field {name!r}{hint}; fix the name ({FIELDS_HELP})")
  return UserError(f"config file {config_path} sets {name!r}, which is not a config field{hint}; fix the "
                   f"name ({FIELDS_HELP})")


def fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every leaf field's dotted name (`model.cell`, `data.synthetic.seed`, ...), in the config's order."""
  names = []
  for key, value in config.items():
    names += fields(value, f"{prefix}{key}.") if isinstance(value, ml_collections.ConfigDict) else [prefix + key]
  return names
