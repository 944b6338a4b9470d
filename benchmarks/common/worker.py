"""One measurement in a fresh process: `call_worker(target, kwargs, framework)` runs
`python -m benchmarks.common.worker '<json spec>'`, which calls `target` ('package.module:function') with
`kwargs` and prints its result as one JSON line.

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

REPO = Path(__file__).resolve().parents[2]
USER_ERROR, USER_ERROR_KEY = 2, "user_error"  # a worker's exit status and result key for lm_jax's UserError


def progress(message: str) -> None:
  print(f"| {message}", file=sys.stderr, flush=True)


def require_torch() -> None:
  if importlib.util.find_spec("torch") is None:
    raise UserError("PyTorch is not installed and every figure is relative to it; pip install -e '.[torch]'")


def call_worker(target: str, kwargs: dict, framework: str | None = None):
  """Runs `target(**kwargs)` in a fresh process (set up as lm_jax's commands are when `framework` is lm_jax);
  its stderr passes through, its last stdout line is the result."""
  spec = {"target": target, "kwargs": kwargs, "framework": framework}
  done = subprocess.run([sys.executable, "-m", "benchmarks.common.worker", json.dumps(spec)], cwd=REPO,
                        stdout=subprocess.PIPE, text=True)
  last_line = (done.stdout.strip().splitlines() or [""])[-1]
  if done.returncode == USER_ERROR and last_line.startswith(f'{{"{USER_ERROR_KEY}": '):
    raise UserError(json.loads(last_line)[USER_ERROR_KEY])  # the worker's bad input: its one line, as ours
  if done.returncode:
    raise UserError(f"the {framework or target} worker failed with exit status {done.returncode}; its error is above")
  return json.loads(last_line)


def run(spec: dict):
  if spec["framework"] == "lm_jax":
    from lm_jax import runtime
    runtime.reuse_freed_memory()  # as lm_jax's commands do, before JAX starts its threads
    import jax
    if jax.default_backend() != "cpu":
      # float32 is float32 on an accelerator too, as PyTorch's side runs it (common/torch_device.py): XLA's
      # default there is TF32 on a GPU, bfloat16 passes on a TPU. bfloat16 configs set their own matmul inputs.
      jax.config.update("jax_default_matmul_precision", "highest")
  module, function = spec["target"].split(":")
  return getattr(importlib.import_module(module), function)(**spec["kwargs"])


if __name__ == "__main__":
  try:
    print(json.dumps(run(json.loads(sys.argv[1]))))
  except UserError as error:  # handed to call_worker, which raises it as the benchmark's own one line
    print(json.dumps({USER_ERROR_KEY: str(error)}))
    sys.exit(USER_ERROR)
