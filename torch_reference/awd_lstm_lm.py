"""salesforce/awd-lstm-lm's classes as its main.py pickles them, written from torch.nn parts: RNNModel (model.py),
LockedDropout, WeightDrop, SplitCrossEntropyLoss, and a stand-in for torchqrnn's QRNNLayer, each under the
module name it has there (`model`, `locked_dropout`, `weight_drop`, `splitcross`, `torchqrnn.qrnn`), with the
same attributes and state_dict names. `torch.save([model, criterion, optimizer], f)` of them inside
`importable_as_awd_lstm_lm()` writes the file main.py writes, with what current PyTorch adds to it: after an
evaluation, WeightDrop's matrix `weight_hh_l0` registered beside `weight_hh_l0_raw` (the same tensor), and the
wrapped LSTM's `flatten_parameters` bound to a WeightDrop method (pickled as a getattr).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import types
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

Hidden = list[tuple[torch.Tensor, torch.Tensor]]


class LockedDropout(nn.Module):
  """One mask per column and unit, shared by every time step."""

  __module__ = "locked_dropout"

  def forward(self, x_TxBxH: torch.Tensor, p: float) -> torch.Tensor:
    if not self.training or not p:
      return x_TxBxH
    mask_1xBxH = x_TxBxH.new_empty(1, *x_TxBxH.shape[1:]).bernoulli_(1 - p) / (1 - p)
    return x_TxBxH * mask_1xBxH


class WeightDrop(nn.Module):
  """DropConnect on `module`'s named weights: the trained matrix is kept as `<name>_raw`, and each call sets
  `<name>` to its dropped copy (the raw Parameter itself at evaluation, which nn.Module then registers)."""

  __module__ = "weight_drop"

  def __init__(self, module: nn.Module, weights: list[str], dropout: float = 0.0, variational: bool = False):
    super().__init__()
    self.module, self.weights, self.dropout, self.variational = module, weights, dropout, variational
    if isinstance(module, nn.RNNBase):  # the reference's cuDNN work-around: a bound method, pickled as getattr
      module.flatten_parameters = self.widget_demagnetizer_y2k_edition
    for name in weights:
      raw = module._parameters.pop(name)
      module.register_parameter(f"{name}_raw", nn.Parameter(raw.data))

  def widget_demagnetizer_y2k_edition(self, *args, **kwargs) -> None:  # the reference's name for it
    return None

  def forward(self, *args):
    for name in self.weights:
      dropped = F.dropout(getattr(self.module, f"{name}_raw"), p=self.dropout, training=self.training)
      self.module._parameters.pop(name, None)  # the patch current PyTorch needs before a training step's tensor
      setattr(self.module, name, dropped)
    return self.module(*args)


class QRNNLayer(nn.Module):
  """Only what a QRNN model's pickle and state_dict show of torchqrnn's layer: its linear map."""

  __module__ = "torchqrnn.qrnn"

  def __init__(self, input_size: int, hidden_size: int, window: int = 1):
    super().__init__()
    self.linear = nn.Linear(window * input_size, 3 * hidden_size)


class RNNModel(nn.Module):
  """model.py's RNNModel: embedding dropout, locked dropout, single-layer LSTMs (or GRUs, or QRNNs) wrapped by
  WeightDrop when `wdrop`, the last of `ninp` units when tied, and a decoder whose output is scored by the
  criterion; `forward` returns the last layer's (dropped) output as [T*B, H], as the reference's does."""

  __module__ = "model"

  def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.5,
               dropouth: float = 0.5, dropouti: float = 0.5, dropoute: float = 0.1, wdrop: float = 0.0,
               tie_weights: bool = False):
    super().__init__()
    self.lockdrop = LockedDropout()
    self.idrop, self.hdrop, self.drop = nn.Dropout(dropouti), nn.Dropout(dropouth), nn.Dropout(dropout)  # unused there too
    self.encoder = nn.Embedding(ntoken, ninp)
    last = ninp if tie_weights or rnn_type == "GRU" else nhid  # model.py's GRU ends at ninp units, tied or not
    sizes = [last if k == nlayers - 1 else nhid for k in range(nlayers)]
    inputs = [ninp] + sizes[:-1]
    if rnn_type == "QRNN":
      rnns = [QRNNLayer(i, h, window=2 if k == 0 else 1) for k, (i, h) in enumerate(zip(inputs, sizes))]
      for rnn in rnns:
        rnn.linear = WeightDrop(rnn.linear, ["weight"], dropout=wdrop)
    else:
      cell = {"LSTM": nn.LSTM, "GRU": nn.GRU}[rnn_type]
      rnns = [cell(i, h, 1) for i, h in zip(inputs, sizes)]
      rnns = [WeightDrop(rnn, ["weight_hh_l0"], dropout=wdrop) for rnn in rnns] if wdrop else rnns
    self.rnns = nn.ModuleList(rnns)
    self.decoder = nn.Linear(nhid, ntoken)
    if tie_weights:
      self.decoder.weight = self.encoder.weight
    self.rnn_type, self.ninp, self.nhid, self.nlayers, self.tie_weights = rnn_type, ninp, nhid, nlayers, tie_weights
    self.dropout, self.dropouti, self.dropouth, self.dropoute = dropout, dropouti, dropouth, dropoute
    self.sizes = sizes

  def init_hidden(self, batch_size: int) -> Hidden:
    zeros = lambda size: self.encoder.weight.new_zeros(1, batch_size, size)
    return [(zeros(size), zeros(size)) if self.rnn_type == "LSTM" else zeros(size) for size in self.sizes]

  def forward(self, tokens_TxB: torch.Tensor, hidden: Hidden):
    weight = self.encoder.weight
    if self.training and self.dropoute:
      weight = weight * weight.new_empty(weight.shape[0], 1).bernoulli_(1 - self.dropoute) / (1 - self.dropoute)
    x = self.lockdrop(F.embedding(tokens_TxB, weight), self.dropouti)
    new_hidden = []
    for k, rnn in enumerate(self.rnns):
      x, h = rnn(x, hidden[k])
      new_hidden.append(h)
      x = self.lockdrop(x, self.dropouth if k < self.nlayers - 1 else self.dropout)
    return x.reshape(-1, x.shape[-1]), new_hidden


class SplitCrossEntropyLoss(nn.Module):
  """splitcross.py's criterion: `splits` between a head and tail clusters, each cluster a pretend word of the
  head's softmax with its own vector and bias. Without tail clusters (main.py's choice up to 75,000 words) it is
  the full softmax's cross-entropy, the only case `forward` computes."""

  __module__ = "splitcross"

  def __init__(self, hidden_size: int, splits: list[int], verbose: bool = False):
    super().__init__()
    self.hidden_size, self.splits = hidden_size, [0] + splits + [100 * 1000000]
    self.nsplits, self.stats, self.verbose = len(self.splits) - 1, collections.defaultdict(list), verbose
    if self.nsplits > 1:
      self.tail_vectors = nn.Parameter(torch.zeros(self.nsplits - 1, hidden_size))
      self.tail_bias = nn.Parameter(torch.zeros(self.nsplits - 1))

  def forward(self, weight: torch.Tensor, bias: torch.Tensor, hiddens: torch.Tensor, targets: torch.Tensor):
    if self.nsplits > 1:
      raise NotImplementedError("tail clusters: only their pickled form is rebuilt here")
    return F.cross_entropy(F.linear(hiddens, weight, bias), targets)


def logits(model: RNNModel, tokens_TxB: torch.Tensor) -> torch.Tensor:
  """The model's logits [T, B, V] at evaluation (no dropout), from a zero state."""
  model.eval()
  with torch.no_grad():
    output, _ = model(tokens_TxB, model.init_hidden(tokens_TxB.shape[1]))
    return model.decoder(output).reshape(*tokens_TxB.shape, -1)


def train_step(model: RNNModel, criterion: SplitCrossEntropyLoss, optimizer: torch.optim.Optimizer,
               tokens_TxB: torch.Tensor, clip: float = 0.25) -> None:
  """One of main.py's steps without its regularisers: dropout on, clip, the optimizer's update."""
  model.train()
  optimizer.zero_grad()
  output, _ = model(tokens_TxB[:-1], model.init_hidden(tokens_TxB.shape[1]))
  criterion(model.decoder.weight, model.decoder.bias, output, tokens_TxB[1:].reshape(-1)).backward()
  nn.utils.clip_grad_norm_(model.parameters(), clip)
  optimizer.step()


@contextlib.contextmanager
def importable_as_awd_lstm_lm() -> Iterator[None]:
  """These classes importable under awd-lstm-lm's (and torchqrnn's) module names, as pickle needs them to be
  while torch.save writes them; unimportable again after."""
  modules: dict[str, types.ModuleType] = {"torchqrnn": types.ModuleType("torchqrnn")}
  for cls in (RNNModel, LockedDropout, WeightDrop, SplitCrossEntropyLoss, QRNNLayer):
    setattr(modules.setdefault(cls.__module__, types.ModuleType(cls.__module__)), cls.__name__, cls)
  clashes = sorted(set(modules) & set(sys.modules))
  if clashes:
    raise RuntimeError(f"modules {clashes} are imported already; these stand-ins would hide them")
  sys.modules.update(modules)
  try:
    yield
  finally:
    for name in modules:
      del sys.modules[name]
