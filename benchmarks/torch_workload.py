"""The PyTorch workload: torch_reference's word_language_model (nn.LSTM / nn.GRU / nn.RNN run cuDNN on a
GPU, MKL/oneDNN on a CPU), timed through its own train step, evaluate and generate loop."""

from __future__ import annotations

import os

import torch

from benchmarks.measure import Workload
from benchmarks.shapes import Shape, random_stream
from torch_reference.word_language_model import TorchRNNModel, batchify, evaluate, generate, train_window, window


def prepare(seed: int) -> torch.device:
  """Every PyTorch measurement's settings; returns the device: the GPU when there is one."""
  torch.set_num_threads(os.cpu_count())
  # XLA:CPU flushes denormal results to zero; PyTorch by default does not, and its tanh RNN at 2x650
  # then spends ~17x longer per step in denormal arithmetic (9.2 s against 0.53 s, measured here).
  # Like against like: both flush.
  torch.set_flush_denormal(True)
  torch.manual_seed(seed)
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device) -> str:
  return torch.cuda.get_device_name() if device.type == "cuda" else "cpu"


def build(shape: Shape) -> Workload:
  device = prepare(seed=0)
  model = TorchRNNModel(shape.cell, shape.vocab, shape.nhid, shape.nhid, shape.nlayers, shape.dropout,
                        shape.tied).to(device)
  on_device = lambda ids, batch: batchify(torch.from_numpy(ids).long().to(device), batch)
  train_TxB = on_device(random_stream(shape, shape.batch, shape.train_windows, seed=0), shape.batch)
  eval_TxB = on_device(random_stream(shape, shape.eval_batch, shape.eval_windows, seed=1), shape.eval_batch)
  hidden, step = model.init_hidden(shape.batch), 0

  def train() -> None:
    nonlocal hidden, step
    start = (step % shape.train_windows) * shape.bptt
    _, hidden = train_window(model, *window(train_TxB, start, shape.bptt), hidden, shape.lr, shape.clip)
    step += 1

  return Workload(
      train_step=train,
      evaluate=lambda: evaluate(model, eval_TxB, shape.bptt),
      generate=lambda: generate(model, shape.gen_words, 1.0),
      compilations=lambda: None,
      device_peak_mib=lambda: torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None,
      device=device_description(device),
  )
