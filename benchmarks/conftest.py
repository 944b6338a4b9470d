"""The benchmarks' self-tests: `quick_benchmark`, which runs a benchmark's `--quick` mode (the session's
compilation cache: the root conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common.worker import REPO


def quick_benchmark(module: str, output_dir: Path, *flags: str) -> dict:
  """Runs `python -m benchmarks.<module> --quick FLAGS` into output_dir and returns its JSON report.

  Skips without PyTorch: every benchmark figure is relative to it.
  """
  if importlib.util.find_spec("torch") is None:
    pytest.skip("PyTorch is not installed; every benchmark figure is relative to it")
  subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick", *flags, f"--output_dir={output_dir}"],
                 cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=1200)
  (json_path,) = output_dir.glob("*.json")
  return json.loads(json_path.read_text())
