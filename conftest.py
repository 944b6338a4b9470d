"""The test session's set-up for tests/ and benchmarks/, shared with the CLI and benchmark processes the tests start
(they inherit the environment; pytest-xdist's workers too): XLA's quickest compiling (tests/xla_session.py), and one
compilation cache for the whole session. The suite compiles the same small programs again and again (a run and its
resumed twin, each command-line call), and on a CPU compiling is most of its time. Set before jax is imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests import xla_session

REPO = Path(__file__).resolve().parent

xla_session.set_session_flags()

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lm_jax_tests_xla_cache_")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # most of the suite's programs are small


def pytest_sessionfinish(session, exitstatus) -> None:
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
