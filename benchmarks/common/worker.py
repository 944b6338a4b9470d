"""One measurement in a fresh process: `call_worker(target, kwargs, framework)` runs
`python -m benchmarks.common.worker '<json spec>'`, which calls `target` ('package.module:function') with
`kwargs` and prints its result as one JSON line.

A process per measurement keeps the frameworks apart (their thread pools, allocators and peak
resident memory), and only the framework measured is imported. The worker does not outlive the benchmark: SIGTERM
to the benchmark is passed on (an lm_jax training run checkpoints, then stops: `Preempted`, raised again here), and
on Linux the worker gets SIGTERM if the benchmark dies otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lm_jax import child_process
from lm_jax.errors import Preempted, UserError

REPO = Path(__file__).resolve().parents[2]
USER_ERROR, USER_ERROR_KEY = 2, "user_error"  # a worker's exit status and result key for lm_jax's UserError
PREEMPTED, PREEMPTED_KEY = 143, "preempted"  # and for a training run that SIGTERM stopped at a checkpoint


def progress(message: str) -> None:
  print(f"| {message}", file=sys.stderr, flush=True)


def require_torch() -> None:
  if importlib.util.find_spec("torch") is None:
    raise UserError("PyTorch is not installed and every figure is relative to it; pip install -e '.[torch]'")


def call_worker(target: str, kwargs: dict, framework: str | None = None):
  """Runs `target(**kwargs)` in a fresh process (set up as lm_jax's commands are when `framework` is lm_jax);
  its stderr passes through, its last stdout line is the result."""
  spec = {"target": target, "kwargs": kwargs, "framework": framework}
  with subprocess.Popen([sys.executable, "-m", "benchmarks.common.worker", json.dumps(spec)], cwd=REPO,
                        stdout=subprocess.PIPE, text=True, preexec_fn=child_process.setup(None, os.getpid())) as worker:
    with _passing_on_sigterm(worker):
      stdout, _ = worker.communicate()
  last_line = (stdout.strip().splitlines() or [""])[-1]
  for status, key, error in ((USER_ERROR, USER_ERROR_KEY, UserError), (PREEMPTED, PREEMPTED_KEY, Preempted)):
    if worker.returncode == status and last_line.startswith(f'{{"{key}": '):
      raise error(json.loads(last_line)[key])  # the worker's one line, as ours
  if worker.returncode:
    raise UserError(f"the {framework or target} worker failed with exit status {worker.returncode}; its error is above")
  return json.loads(last_line)


@contextlib.contextmanager
def _passing_on_sigterm(worker: subprocess.Popen):
  """SIGTERM to this process goes to the worker, which ends as it handles it; this process waits for it."""
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: worker.send_signal(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


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
  except Preempted as stopped:
    print(json.dumps({PREEMPTED_KEY: str(stopped)}))
    sys.exit(PREEMPTED)
