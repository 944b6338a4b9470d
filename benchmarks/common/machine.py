"""The machine: its name for the result files, CPU model, library versions, its matmul ceilings (float32,
and bfloat16 with float32 accumulation), its memory bandwidth and whether it has native bfloat16."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common.timing import seconds
from lm_jax.profile import best_gflops, matmul_ceiling_gflops

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bfloat16 matmuls


def device_name() -> str:
  """e.g. `cpu-2core`, or the accelerator's kind as a slug (`nvidia-h100-80gb-hbm3`)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"cpu-{os.cpu_count()}core"
  return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def _cpuinfo(field: str) -> str | None:
  """The first value of `field` in /proc/cpuinfo; None where there is none (not Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == field:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_model() -> str:
  return _cpuinfo("model name") or platform.processor() or "unknown"


def bfloat16_support(platform_name: str) -> str | None:
  """Why this device has native bfloat16 matmuls (an accelerator, or the CPU flags that give them), or
  None where it has none and bfloat16 would be emulated."""
  if platform_name != "cpu":
    return f"a {platform_name} accelerator"
  found = [flag for flag in BFLOAT16_CPU_FLAGS if flag in (_cpuinfo("flags") or "").split()]
  return f"CPU flags {', '.join(found)}" if found else None


def versions() -> dict[str, str]:
  found = {"python": platform.python_version()}
  for name in LIBRARIES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = "not installed"
  return found


def bandwidth_gb_per_s(mib: int, repeats: int) -> float:
  """Memory read bandwidth of the JAX device, where generation reads its weights: GB/s of a jitted sum
  over a float32 array of `mib` MiB (larger than the caches), best of `repeats` after one warm-up call."""
  x = jnp.ones(mib * 2 ** 20 // 4, jnp.float32)
  total = jax.jit(jnp.sum)
  read = lambda: total(x).block_until_ready()
  read()
  return x.nbytes / min(seconds(read) for _ in range(repeats)) / 1e9


def describe(matmul_n: int, bandwidth_mib: int, repeats: int = 5) -> dict:
  a, b = np.random.default_rng(0).standard_normal((2, matmul_n, matmul_n), dtype=np.float32)
  device = jax.devices()[0]
  return {
      "name": device_name(),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "cpu": cpu_model(),
      "cpu_count": os.cpu_count(),
      "versions": versions(),
      "matmul_n": matmul_n,
      "jax_matmul_gflops": matmul_ceiling_gflops(matmul_n, repeats),
      "numpy_matmul_gflops": best_gflops(lambda: a @ b, matmul_n, repeats),
      "jax_bf16_matmul_gflops": matmul_ceiling_gflops(matmul_n, repeats, jnp.bfloat16),
      "bandwidth_mib": bandwidth_mib,
      "bandwidth_gb_per_s": bandwidth_gb_per_s(bandwidth_mib, repeats),
      "bfloat16_support": bfloat16_support(device.platform),
  }
