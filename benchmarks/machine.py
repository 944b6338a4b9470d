"""The machine: its name for the result files, CPU model, library versions and fp32 matmul ceiling."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.measure import seconds

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


def device_name() -> str:
  """e.g. `cpu-2core`, or the accelerator's kind as a slug (`nvidia-h100-80gb-hbm3`)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"cpu-{os.cpu_count()}core"
  return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def versions() -> dict[str, str]:
  found = {"python": platform.python_version()}
  for name in LIBRARIES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = "not installed"
  return found


def best_gflops(matmul: Callable[[], None], n: int, repeats: int) -> float:
  """GFLOP/s of an n x n @ n x n product, best of `repeats` after one warm-up call."""
  matmul()
  return 2 * n ** 3 / min(seconds(matmul) for _ in range(repeats)) / 1e9


def describe(matmul_n: int, repeats: int = 5) -> dict:
  a, b = np.random.default_rng(0).standard_normal((2, matmul_n, matmul_n), dtype=np.float32)
  a_dev, b_dev = jax.device_put(a), jax.device_put(b)
  jax_matmul = jax.jit(jnp.matmul)
  device = jax.devices()[0]
  return {
      "name": device_name(),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "cpu": cpu_model(),
      "cpu_count": os.cpu_count(),
      "versions": versions(),
      "matmul_n": matmul_n,
      "jax_matmul_gflops": best_gflops(lambda: jax_matmul(a_dev, b_dev).block_until_ready(), matmul_n, repeats),
      "numpy_matmul_gflops": best_gflops(lambda: a @ b, matmul_n, repeats),
  }
