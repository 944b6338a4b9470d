"""A child process that does not outlive its parent: what lm-jax-sweep's runs and the benchmarks' workers do
before they start. Light on purpose (no JAX): a benchmark's parent process imports it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def setup(cores: frozenset[int] | None, parent_pid: int) -> Callable[[], None] | None:
  """The child's `preexec_fn`: keep to `cores` (None: all) and, on Linux, get SIGTERM (a training run checkpoints,
  then exits) when the parent dies, even by SIGKILL, so that no run outlives it and a second sweep or benchmark
  never meets the first one's run still writing its workdir."""
  prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
  if cores is None and prctl is None:
    return None

  def setup_child() -> None:
    if cores:
      os.sched_setaffinity(0, cores)
    if prctl is not None:
      prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
      if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)

  return setup_child
