"""One measurement in a fresh process: `python -m benchmarks.worker '<json spec>'` prints one JSON line;
`call_worker(spec)` runs one from the benchmark commands.

A process per measurement keeps the frameworks apart (their thread pools, allocators and peak
resident memory), and only the framework measured is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from lm_jax.errors import UserError

from benchmarks.measure import measure
from benchmarks.shapes import Shape

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = {"lm_jax": "benchmarks.jax_workload", "pytorch": "benchmarks.torch_workload"}
LOOPS = {"lm_jax": "benchmarks.jax_loop", "pytorch": "benchmarks.torch_loop"}  # the whole training loop


def progress(message: str) -> None:
  print(f"| {message}", file=sys.stderr, flush=True)


def require_torch() -> None:
  if importlib.util.find_spec("torch") is None:
    raise UserError("PyTorch is not installed and every figure is relative to it; pip install -e '.[torch]'")


def call_worker(spec: dict) -> dict:
  """Runs this module in a fresh process; its stderr passes through, its last stdout line is the result."""
  done = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(spec)], cwd=REPO,
                        stdout=subprocess.PIPE, text=True)
  if done.returncode:
    raise UserError(f"the {spec['task']} worker failed with exit status {done.returncode}; its error is above")
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(spec: dict) -> dict:
  """spec: {"task": "machine", "matmul_n": N, "bandwidth_mib": M}, {"task": FRAMEWORK, "shape": {...},
  "breakdown": bool} or {"task": "whole_loop", "framework": FRAMEWORK, "loop": {...}} (benchmarks/whole_loop.py)."""
  if spec["task"] == "machine":
    from benchmarks import machine
    return machine.describe(spec["matmul_n"], spec["bandwidth_mib"])
  framework = spec.get("framework", spec["task"])
  if framework == "lm_jax":
    from lm_jax import runtime
    runtime.reuse_freed_memory()  # as lm_jax's commands do, before JAX starts its threads
  if spec["task"] == "whole_loop":
    return importlib.import_module(LOOPS[framework]).run(**spec["loop"])
  shape = Shape(**{**spec["shape"], "gen_samples": tuple(spec["shape"]["gen_samples"])})  # JSON made it a list
  result = measure(importlib.import_module(FRAMEWORKS[framework]).build(shape), shape)
  if spec.get("breakdown"):
    from benchmarks import breakdown
    result["breakdown"] = breakdown.step_breakdown(shape)
  return result


if __name__ == "__main__":
  print(json.dumps(run(json.loads(sys.argv[1]))))
