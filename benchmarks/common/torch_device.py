"""Every PyTorch measurement's settings, in its worker process (the only benchmark module importing torch
besides the PyTorch workloads themselves)."""

from __future__ import annotations

import os

import torch


def prepare(seed: int) -> torch.device:
  """Threads, denormals, float32 maths and the seed; returns the device: the GPU when there is one."""
  torch.set_num_threads(os.cpu_count())
  # XLA:CPU flushes denormal results to zero; PyTorch by default does not, and its tanh RNN at 2x650
  # then spends ~17x longer per step in denormal arithmetic (9.2 s against 0.53 s, measured here).
  # Like against like: both flush.
  torch.set_flush_denormal(True)
  # float32 is float32 on a GPU too: cuDNN's RNNs would otherwise use TF32 (matmuls already do not, by
  # default), and lm_jax's workers run float32 at full precision there (benchmarks/common/worker.py).
  torch.backends.cudnn.allow_tf32 = False
  torch.manual_seed(seed)
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device) -> str:
  return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"


def autocast_dtype(matmul_dtype: str) -> torch.dtype | None:
  """The torch.autocast dtype that stands for lm_jax's config.model.matmul_dtype (None: no autocast)."""
  return {"float32": None, "bfloat16": torch.bfloat16}[matmul_dtype]
