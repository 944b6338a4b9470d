"""The test session's set-up for tests/ and benchmarks/, shared with the CLI and benchmark processes the tests start
(they inherit the environment; pytest-xdist's workers too): XLA's quickest compiling, and one compilation cache for
the whole session. The suite compiles the same small programs again and again (a run and its resumed twin, each
command-line call), and on a CPU compiling is most of its time. Set before jax is imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent

# The suite's programs are tiny, so compiling them dominates and running them does not: LLVM's optimisation level 0
# cuts the session's CPU time by about a third (measured: tests/test_fidelity, test_precision, test_cells,
# test_steps 307 -> 179 CPU s) and passes the same tolerances. Users' runs and real benchmark runs keep XLA's
# default; the benchmarks' --quick self-tests time nothing that matters.
# Skipping LLVM's expensive passes as well (what jax's `jax_disable_most_optimizations` adds) saves about 6% more.
_QUICK_COMPILING = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_QUICK_COMPILING]).strip()

_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lm_jax_tests_xla_cache_")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # most of the suite's programs are small


def pytest_sessionfinish(session, exitstatus) -> None:
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
