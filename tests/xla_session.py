"""The test session's XLA flags: the quickest compiling, set by the root conftest.py before jax is imported and
inherited by every process the tests start (pytest-xdist's workers, the CLI and benchmark runs). The suite compiles
many small programs and runs each briefly, so on a CPU compiling is most of its time. Users' runs and real benchmark
runs keep XLA's default, and so do the few tests whose time goes to running a longer program
(`optimised_environment`).
"""

from __future__ import annotations

import importlib.metadata
import os

# The XLA_FLAGS the session started with (set once: the processes it starts find it and keep their flags).
FLAGS_BEFORE = "LM_JAX_TESTS_XLA_FLAGS_BEFORE"


def quick_compiling_flags() -> list[str]:
  # LLVM's optimisation level 0 cuts the session's CPU time by about a third (tests/test_fidelity, test_precision,
  # test_cells, test_steps: 307 -> 179 CPU s) and passes the same tolerances; skipping LLVM's expensive passes (what
  # jax's `jax_disable_most_optimizations` adds) saves about 6% more.
  flags = ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
  # jaxlib 0.10's older fusion emitters compile about 40% faster than its MLIR ones (a transformer's train step:
  # 3.7 -> 2.4 s; the suite: 551 -> 452 s). jaxlib 0.11 has only the MLIR emitters, and XLA stops at a flag it
  # does not know.
  if _has_older_fusion_emitters():
    flags.append("--xla_cpu_use_fusion_emitters=false")
  return flags


def set_session_flags() -> None:
  """Adds the quick compiling to XLA_FLAGS, unless the caller chose an optimisation level of their own."""
  if FLAGS_BEFORE in os.environ:
    return
  before = os.environ.get("XLA_FLAGS", "")
  os.environ[FLAGS_BEFORE] = before
  if "xla_backend_optimization_level" not in before:
    os.environ["XLA_FLAGS"] = " ".join([before, *quick_compiling_flags()]).strip()


def optimised_environment() -> dict[str, str]:
  """This process's environment with the XLA_FLAGS the session started with."""
  return {**os.environ, "XLA_FLAGS": os.environ.get(FLAGS_BEFORE, os.environ.get("XLA_FLAGS", ""))}


def _has_older_fusion_emitters() -> bool:
  """Whether jaxlib is older than 0.11 (which has only the MLIR emitters)."""
  try:
    major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
  except importlib.metadata.PackageNotFoundError:  # jax built without the distribution: no flag it may lack
    return False
  return (int(major), int(minor)) < (0, 11)
