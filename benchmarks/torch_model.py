"""The PyTorch side: word_language_model's model and its train, evaluate and generate loops, from
torch.nn parts (nn.LSTM / nn.GRU / nn.RNN run cuDNN on a GPU, MKL/oneDNN on a CPU)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.measure import Workload
from benchmarks.shapes import Shape, random_stream

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
# cell -> (torch module, its extra arguments)
RECURRENT = {"lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}), "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
             "rnn_relu": (nn.RNN, {"nonlinearity": "relu"})}


class TorchLM(nn.Module):
  """embedding -> dropout -> recurrent layers (dropout between) -> dropout -> linear decoder (logits)."""

  def __init__(self, shape: Shape):
    super().__init__()
    self.cell, self.nlayers, self.nhid = shape.cell, shape.nlayers, shape.nhid
    self.drop = nn.Dropout(shape.dropout)
    self.encoder = nn.Embedding(shape.vocab, shape.nhid)
    module, extra = RECURRENT[shape.cell]
    self.rnn = module(shape.nhid, shape.nhid, shape.nlayers, dropout=shape.dropout, **extra)
    self.decoder = nn.Linear(shape.nhid, shape.vocab)
    if shape.tied:
      self.decoder.weight = self.encoder.weight

  def forward(self, tokens_TxB: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
    h_TxBxH, hidden = self.rnn(self.drop(self.encoder(tokens_TxB)), hidden)
    return self.decoder(self.drop(h_TxBxH)), hidden

  def init_hidden(self, batch_size: int) -> Hidden:
    h = torch.zeros(self.nlayers, batch_size, self.nhid, device=self.encoder.weight.device)
    return (h, torch.zeros_like(h)) if self.cell == "lstm" else h


def detach(hidden: Hidden) -> Hidden:
  """The reference's repackage_hidden: truncated BPTT cuts the graph at the window boundary."""
  return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def batchify(ids: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
  return torch.from_numpy(ids.astype(np.int64)).view(batch_size, -1).t().contiguous().to(device)


def train_window(model: TorchLM, inputs_TxB: torch.Tensor, targets_TxB: torch.Tensor, hidden: Hidden,
                 lr: float, clip: float) -> Hidden:
  """One step of the reference's train(): forward, backward, clip_grad_norm_, then p -= lr * grad."""
  model.train()
  hidden = detach(hidden)
  model.zero_grad()
  logits_TxBxV, hidden = model(inputs_TxB, hidden)
  loss = F.cross_entropy(logits_TxBxV.flatten(0, 1), targets_TxB.flatten())
  loss.backward()
  nn.utils.clip_grad_norm_(model.parameters(), clip)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(p.grad, alpha=-lr)
  loss.item()  # the reference adds it to total_loss; this also waits for the device
  return hidden


def evaluate(model: TorchLM, data_TxB: torch.Tensor, bptt: int) -> float:
  """The reference's evaluate(): mean NLL with the state carried across whole windows."""
  model.eval()
  hidden, total = model.init_hidden(data_TxB.size(1)), 0.0
  with torch.no_grad():
    for start in range(0, data_TxB.size(0) - 1, bptt):
      inputs_TxB, targets_TxB = data_TxB[start:start + bptt], data_TxB[start + 1:start + 1 + bptt]
      logits_TxBxV, hidden = model(inputs_TxB, hidden)
      total += len(inputs_TxB) * F.cross_entropy(logits_TxBxV.flatten(0, 1), targets_TxB.flatten()).item()
  return total / (data_TxB.size(0) - 1)


def generate(model: TorchLM, num_words: int, temperature: float) -> list[int]:
  """The reference's generate.py: one word in, sample the next from softmax(logits / temperature)."""
  model.eval()
  hidden = model.init_hidden(1)
  input_1x1 = torch.randint(model.encoder.num_embeddings, (1, 1), device=model.encoder.weight.device)
  words = []
  with torch.no_grad():
    for _ in range(num_words):
      logits_1x1xV, hidden = model(input_1x1, hidden)
      word = int(torch.multinomial(torch.softmax(logits_1x1xV[0, 0] / temperature, dim=-1), 1))
      input_1x1.fill_(word)
      words.append(word)  # the reference writes the word out here, so it needs it on the host
  return words


def build(shape: Shape) -> Workload:
  torch.set_num_threads(os.cpu_count())
  # XLA:CPU flushes denormal results to zero; PyTorch by default does not, and its tanh RNN at 2x650
  # then spends ~17x longer per step in denormal arithmetic (9.2 s against 0.53 s, measured here).
  # Like against like: both flush.
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  model = TorchLM(shape).to(device)
  train_TxB = batchify(random_stream(shape, shape.batch, shape.train_windows, seed=0), shape.batch, device)
  eval_TxB = batchify(random_stream(shape, shape.eval_batch, shape.eval_windows, seed=1), shape.eval_batch, device)
  hidden, step = model.init_hidden(shape.batch), 0

  def train() -> None:
    nonlocal hidden, step
    start = (step % shape.train_windows) * shape.bptt
    hidden = train_window(model, train_TxB[start:start + shape.bptt], train_TxB[start + 1:start + 1 + shape.bptt],
                          hidden, shape.lr, shape.clip)
    step += 1

  return Workload(
      train_step=train,
      evaluate=lambda: evaluate(model, eval_TxB, shape.bptt),
      generate=lambda: generate(model, shape.gen_words, 1.0),
      compilations=lambda: None,
      device_peak_mib=lambda: torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None,
      device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
  )
