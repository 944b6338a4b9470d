"""User-facing errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserError(Exception):
  """Bad input from the user. The message names the problem and the fix."""


class Preempted(Exception):
  """SIGTERM stopped the run at a step boundary, after writing the checkpoint to resume from."""


def exits_cleanly_on_user_error(main: Callable[[list[str]], T]) -> Callable[[list[str]], T]:
  """Wraps an absl main (or flags parser) so a UserError prints one line and exits with status 2."""

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> T:
    try:
      return main(argv)
    except UserError as e:
      prog = argv[0].rsplit("/", 1)[-1] if argv else "lm-jax"
      if prog == "__main__.py":  # `python -m package`: the package's name
        prog = argv[0].rsplit("/", 2)[-2]
      print(f"{prog}: error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped
