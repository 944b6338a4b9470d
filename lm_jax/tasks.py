"""The tasks a run can be, by name: each its training command and its config validation. Sweeps run any task's
command once per combination (lm_jax/sweep.py); a new task adds its entry here."""

from __future__ import annotations

from typing import Callable, NamedTuple

import ml_collections

from lm_jax import config as lm_config
from lm_jax.errors import UserError


class TaskCommand(NamedTuple):
  script: str                                           # the console script users type
  module: str                                           # the same command as `python -m MODULE`
  validate: Callable[[ml_collections.ConfigDict], None]  # raises UserError for a bad config


TASKS = {"lm": TaskCommand("lm-jax-train", "lm_jax.cli.train", lm_config.validate)}


def task(name: str) -> TaskCommand:
  if name not in TASKS:
    raise UserError(f"unknown task {name!r}; pass --task= one of {', '.join(TASKS)}")
  return TASKS[name]
