"""The PyTorch workload: torch_reference's word_language_model (nn.LSTM / nn.GRU / nn.RNN run cuDNN on a
GPU, MKL/oneDNN on a CPU) or its TransformerModel, timed through the reference's train step, evaluate and
generate loop. A bfloat16 shape runs them under torch.autocast (the forward and loss only in training)."""

from __future__ import annotations

import torch

from benchmarks.common.torch_device import autocast_dtype, device_description, prepare
from benchmarks.step_time.measure import Workload
from benchmarks.step_time.shapes import TRANSFORMER, Shape, random_stream
from torch_reference import transformer, word_language_model
from torch_reference.word_language_model import batchify, evaluate, train_window, window


def build(shape: Shape) -> Workload:
  device = prepare(seed=0)
  if shape.model == TRANSFORMER:
    model = transformer.TorchTransformerModel(shape.vocab, shape.nhid, shape.nhead, shape.nhid, shape.nlayers,
                                              shape.dropout)
    generate = transformer.generate
  else:
    model = word_language_model.TorchRNNModel(shape.model, shape.vocab, shape.nhid, shape.nhid, shape.nlayers,
                                              shape.dropout, shape.tied)
    generate = word_language_model.generate
  model = model.to(device)
  lower_dtype = autocast_dtype(shape.dtype)
  # A context manager, and a decorator running a function under it; disabled (a no-op) for float32.
  autocast = torch.autocast(device.type, dtype=lower_dtype, enabled=lower_dtype is not None)
  synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
  on_device = lambda ids, batch: batchify(torch.from_numpy(ids).long().to(device), batch)
  train_TxB = on_device(random_stream(shape, shape.batch, shape.train_windows, seed=0), shape.batch)
  eval_TxB = on_device(random_stream(shape, shape.eval_batch, shape.eval_windows, seed=1), shape.eval_batch)
  hidden, step = model.init_hidden(shape.batch), 0

  def train() -> None:
    nonlocal hidden, step
    start = (step % shape.train_windows) * shape.bptt
    _, hidden = train_window(model, *window(train_TxB, start, shape.bptt), hidden, shape.lr, shape.clip,
                             lower_dtype)
    step += 1

  @torch.no_grad()
  def recurrence_forward() -> None:
    """torch.nn.LSTM/GRU/RNN's forward over the embedded first training window, from a zero state."""
    model.eval()
    with autocast:
      model.rnn(model.encoder(train_TxB[:shape.bptt]), model.init_hidden(shape.batch))
    synchronize()

  return Workload(
      train_step=train,
      evaluate=autocast(lambda: evaluate(model, eval_TxB, shape.bptt)),
      generate={1: autocast(lambda: generate(model, shape.gen_words, 1.0))},  # the reference's loop: one sample
      recurrence_forward=None if shape.model == TRANSFORMER else recurrence_forward,
      compilations=lambda: None,
      device_peak_mib=lambda: torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None,
      device=device_description(device),
  )

