"""What every lm-jax command shares: quiet library logs, clean user errors, required flags."""

from __future__ import annotations

from typing import Callable

from absl import app, flags, logging

from lm_jax import runtime
from lm_jax.errors import exits_cleanly_on_user_error


def run_main(main: Callable[[list[str]], None], required_flags: list[str]) -> None:
  """app.run(main) with required flags, one-line user errors, and absl INFO logs (orbax is chatty
  there) shown only when asked for with -v 0."""

  def main_with_quiet_logs(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    runtime.reuse_freed_memory()  # before JAX starts its threads
    main(argv)

  flags.mark_flags_as_required(required_flags)
  app.run(exits_cleanly_on_user_error(main_with_quiet_logs))
