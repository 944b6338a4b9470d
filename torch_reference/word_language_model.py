"""PyTorch's word_language_model (pytorch/examples), from torch.nn parts with the reference's structure,
parameter names and rules: corpus, model, batchify and windows, train step, evaluate, generate. lm_jax is
checked against it (tests/test_fidelity.py) and timed against it (benchmarks/step_time/torch_workload.py,
benchmarks/whole_loop/torch_loop.py).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
SPLITS = ("train", "valid", "test")


def read_corpus(directory: str) -> tuple[dict[str, torch.Tensor], int]:
  """The reference's data.Corpus: train.txt, valid.txt, test.txt in turn, each read twice, first adding every
  line's words and an `<eos>` to the dictionary (ids in order of first appearance), then encoding them as
  int64, a tensor per line, concatenated. Returns the ids per split and the dictionary's size."""
  word2idx: dict[str, int] = {}
  ids = {}
  for split in SPLITS:
    path = os.path.join(directory, f"{split}.txt")
    with open(path, encoding="utf8") as f:
      for line in f:
        for word in line.split() + ["<eos>"]:
          word2idx.setdefault(word, len(word2idx))
    with open(path, encoding="utf8") as f:
      ids[split] = torch.cat([torch.tensor([word2idx[word] for word in line.split() + ["<eos>"]], dtype=torch.int64)
                              for line in f])
  return ids, len(word2idx)


def _recurrent(cell: str, emsize: int, nhid: int, nlayers: int, dropout: float) -> nn.Module:
  if cell == "lstm":
    return nn.LSTM(emsize, nhid, nlayers, dropout=dropout)
  if cell == "gru":
    return nn.GRU(emsize, nhid, nlayers, dropout=dropout)
  return nn.RNN(emsize, nhid, nlayers, nonlinearity=cell.removeprefix("rnn_"), dropout=dropout)


class TorchRNNModel(nn.Module):
  """embedding -> dropout -> LSTM/GRU/RNN (dropout between layers) -> dropout -> linear decoder.

  `forward` returns logits; the reference's log_softmax + NLLLoss is `F.cross_entropy` of them.
  """

  def __init__(self, cell: str, vocab_size: int, emsize: int, nhid: int, nlayers: int,
               dropout: float = 0.0, tied: bool = False):
    super().__init__()
    self.cell, self.nlayers, self.nhid = cell, nlayers, nhid
    self.drop = nn.Dropout(dropout)
    self.encoder = nn.Embedding(vocab_size, emsize)
    self.rnn = _recurrent(cell, emsize, nhid, nlayers, dropout)
    self.decoder = nn.Linear(nhid, vocab_size)
    if tied:
      self.decoder.weight = self.encoder.weight  # one Parameter under both names
    nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
    nn.init.zeros_(self.decoder.bias)
    if not tied:
      nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

  def forward(self, tokens_TxB: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
    h_TxBxH, hidden = self.rnn(self.drop(self.encoder(tokens_TxB)), hidden)
    return self.decoder(self.drop(h_TxBxH)), hidden

  def init_hidden(self, batch_size: int) -> Hidden:
    weight = self.encoder.weight
    h = torch.zeros(self.nlayers, batch_size, self.nhid, dtype=weight.dtype, device=weight.device)
    return (h, torch.zeros_like(h)) if self.cell == "lstm" else h


def detach(hidden: Hidden) -> Hidden:
  """The reference's repackage_hidden: keep the values, cut the graph at the window boundary."""
  return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
  """[N] -> [N // B, B], column j the j-th contiguous slice."""
  rows = ids.numel() // batch_size
  return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()


def window(data_TxB: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
  """The reference's get_batch: (inputs, targets) of the window at row `start`; the last one may be short."""
  length = min(bptt, data_TxB.size(0) - 1 - start)
  return data_TxB[start:start + length], data_TxB[start + 1:start + 1 + length]


def windows(data_TxB: torch.Tensor, bptt: int):
  """Every truncated-BPTT window of an epoch, in order."""
  for start in range(0, data_TxB.size(0) - 1, bptt):
    yield window(data_TxB, start, bptt)


def train_window(model: TorchRNNModel, inputs_TxB: torch.Tensor, targets_TxB: torch.Tensor, hidden: Hidden,
                 lr: float, clip: float, autocast_dtype: torch.dtype | None = None) -> tuple[float, Hidden]:
  """One step of the reference's train(): forward, backward, clip_grad_norm_, then p -= lr * grad. With an
  `autocast_dtype` (not the reference's), forward and loss run under torch.autocast, the backward outside it
  as PyTorch recommends."""
  model.train()
  model.zero_grad()
  with torch.autocast(inputs_TxB.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
    logits_TxBxV, hidden = model(inputs_TxB, detach(hidden))
    loss = F.cross_entropy(logits_TxBxV.flatten(0, 1), targets_TxB.flatten())
  loss.backward()
  nn.utils.clip_grad_norm_(model.parameters(), clip)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(p.grad, alpha=-lr)
  return loss.item(), hidden  # .item(): the reference adds it to total_loss; it also waits for the device


def train(model: TorchRNNModel, data_TxB: torch.Tensor, bptt: int, lr: float, clip: float) -> list[float]:
  """One pass of the reference's training loop; the loss of every window."""
  hidden = model.init_hidden(data_TxB.size(1))
  losses = []
  for inputs_TxB, targets_TxB in windows(data_TxB, bptt):
    loss, hidden = train_window(model, inputs_TxB, targets_TxB, hidden, lr, clip)
    losses.append(loss)
  return losses


@torch.no_grad()
def evaluate(model: TorchRNNModel, data_TxB: torch.Tensor, bptt: int) -> float:
  """The reference's rule: sum over windows of len(window) * mean loss, over rows - 1."""
  model.eval()
  hidden = model.init_hidden(data_TxB.size(1))
  total = 0.0
  for inputs_TxB, targets_TxB in windows(data_TxB, bptt):
    logits_TxBxV, hidden = model(inputs_TxB, hidden)
    total += len(inputs_TxB) * F.cross_entropy(logits_TxBxV.flatten(0, 1), targets_TxB.flatten()).item()
  return total / (data_TxB.size(0) - 1)


@torch.no_grad()
def generate(model: TorchRNNModel, num_words: int, temperature: float) -> list[int]:
  """The reference's generate.py: a uniformly drawn first word, then one word in, the next sampled from
  softmax(logits / temperature), each read back to the host (the reference writes it out there)."""
  model.eval()
  hidden = model.init_hidden(1)
  input_1x1 = torch.randint(model.encoder.num_embeddings, (1, 1), device=model.encoder.weight.device)
  words = []
  for _ in range(num_words):
    logits_1x1xV, hidden = model(input_1x1, hidden)
    word = int(torch.multinomial(torch.softmax(logits_1x1xV[0, 0] / temperature, dim=-1), 1))
    input_1x1.fill_(word)
    words.append(word)
  return words
