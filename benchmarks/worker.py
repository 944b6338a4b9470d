"""One measurement in a fresh process: `python -m benchmarks.worker '<json spec>'` prints one JSON line.

A process per measurement keeps the frameworks apart (their thread pools, allocators and peak
resident memory), and only the framework measured is imported.
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.measure import measure
from benchmarks.shapes import Shape

FRAMEWORKS = {"lm_jax": "benchmarks.jax_workload", "pytorch": "benchmarks.torch_workload"}


def run(spec: dict) -> dict:
  """spec: {"task": "machine", "matmul_n": N} or {"task": FRAMEWORK, "shape": {...}, "breakdown": bool}."""
  if spec["task"] == "machine":
    from benchmarks import machine
    return machine.describe(spec["matmul_n"])
  shape = Shape(**spec["shape"])
  if spec["task"] == "lm_jax":
    from lm_jax import runtime
    runtime.reuse_freed_memory()  # as lm_jax's commands do, before JAX starts its threads
  result = measure(importlib.import_module(FRAMEWORKS[spec["task"]]).build(shape), shape)
  if spec.get("breakdown"):
    from benchmarks import breakdown
    result["breakdown"] = breakdown.step_breakdown(shape)
  return result


if __name__ == "__main__":
  print(json.dumps(run(json.loads(sys.argv[1]))))
