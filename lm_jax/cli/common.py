"""What every lm-jax command shares: quiet library logs, clean user errors, required flags, --help, the
parsing of a --config file flag, and the check that an output file's folder exists."""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags, logging

from lm_jax import config_file, runtime
from lm_jax.errors import UserError, exits_cleanly_on_user_error


def run_main(main: Callable[[list[str]], None], required_flags: list[str],
             flags_parser: Callable[[list[str]], list[str]] = app.parse_flags_with_usage) -> None:
  """app.run(main) with required flags, one-line user errors (from `flags_parser` too), --help that
  lists the command's flags, and absl INFO logs (orbax is chatty there) shown only with -v 0."""

  def main_with_quiet_logs(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    runtime.reuse_freed_memory()  # before JAX starts its threads
    main(argv)

  flags.mark_flags_as_required(required_flags)
  _describe_command_in_help(sys.modules[main.__module__])
  app.run(exits_cleanly_on_user_error(main_with_quiet_logs), flags_parser=exits_cleanly_on_user_error(flags_parser))


def _describe_command_in_help(command: object) -> None:
  """absl's --help prints the `__main__` module's docstring and the flags keyed to `sys.argv[0]`. Under
  `python -m` that is the command's module; a console script's `__main__` is pip's stub, which has no
  docstring and defines no flags, so --help said only "Try --helpfull". Lend the stub both."""
  main_module = sys.modules["__main__"]
  if main_module is command:
    return
  main_module.__doc__ = command.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(command):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


# The status a shell gives a process that SIGTERM ended (128 + 15); a training command exits with it after the
# run saved a checkpoint to resume from.
EXIT_PREEMPTED = 143


def train_until_preempted(prog: str, train: Callable[[], object]) -> None:
  """Runs a training command's `train()`; a run that SIGTERM stopped (it checkpointed first) says so in one line
  and exits with EXIT_PREEMPTED."""
  from lm_jax.runner import Preempted  # After flag parsing, so --help stays fast.

  try:
    train()
  except Preempted as e:
    print(f"{prog.rsplit('/', 1)[-1]}: {e}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)


def config_file_flags_parser(config_flag: flags.FlagHolder) -> Callable[[list[str]], list[str]]:
  """absl's flag parsing for a command with a `--config` file flag (ml_collections' DEFINE_config_file), with a
  config file that cannot be read or that names an unknown field, and an override of an unknown field, as one
  UserError line (lm_jax/config_file.py; ml_collections raises them as tracebacks)."""

  def parse_flags(argv: list[str]) -> list[str]:
    try:
      args = app.parse_flags_with_usage(argv)
      config_flag.value.get("model")  # A file that failed to load parses as a stand-in that raises when read.
    except (OSError, AttributeError, KeyError) as e:
      raise config_file.load_error(argv, e) from None
    return args

  return parse_flags


def require_output_folder(flag: str, path: str) -> None:
  """Refuses, before any work, an output file `--flag=path` whose folder does not exist."""
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"--{flag}={path}: folder {folder} does not exist; create it or pass another path")
