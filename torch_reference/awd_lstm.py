"""AWD-LSTM (salesforce/awd-lstm-lm model.py, main.py, finetune.py) from torch.nn parts, with the
reference's structure, state_dict names and training rules, and its dropout masks passed in by name
(lm_jax's `RNNModel.dropout_masks` names and layouts), so that both sides drop exactly the same units;
or drawn here as the reference draws its own (`sample_masks`), with main.py's variable-length windows
(`variable_windows`), for a training loop (benchmarks/whole_loop/torch_loop.py).

Layers are single-layer nn.LSTMs of nhid units, the last of emsize when tied; with weight drop each is
wrapped as the reference's WeightDrop is (`rnns.K.module.weight_hh_l0_raw`), and the dropped matrix
enters through torch.func.functional_call (the reference's attribute swap breaks on current PyTorch).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

Hidden = list[tuple[torch.Tensor, torch.Tensor]]
Masks = dict[str, torch.Tensor]


class WeightDropped(nn.Module):
  """The reference's WeightDrop wrapper: `module` is the LSTM, its hidden-to-hidden matrix kept raw."""

  def __init__(self, lstm: nn.LSTM):
    super().__init__()
    self.module = lstm
    raw = lstm.weight_hh_l0
    del lstm._parameters["weight_hh_l0"]
    lstm.register_parameter("weight_hh_l0_raw", nn.Parameter(raw.detach().clone()))

  def forward(self, x: torch.Tensor, hidden, mask: torch.Tensor | None):
    params = {name: p for name, p in self.module.named_parameters() if name != "weight_hh_l0_raw"}
    raw = self.module.weight_hh_l0_raw
    params["weight_hh_l0"] = raw * mask if mask is not None else raw
    return functional_call(self.module, params, (x, hidden))


class AWDRNNModel(nn.Module):
  def __init__(self, vocab_size: int, emsize: int, nhid: int, nlayers: int, tied: bool = True,
               weight_drop: bool = True):
    super().__init__()
    sizes = [emsize if tied and k == nlayers - 1 else nhid for k in range(nlayers)]
    self.sizes = sizes
    self.encoder = nn.Embedding(vocab_size, emsize)
    lstms = [nn.LSTM(emsize if k == 0 else nhid, size, 1) for k, size in enumerate(sizes)]
    self.rnns = nn.ModuleList([WeightDropped(l) for l in lstms] if weight_drop else lstms)
    self.decoder = nn.Linear(nhid, vocab_size)
    if tied:
      self.decoder.weight = self.encoder.weight
    self.encoder.weight.data.uniform_(-0.1, 0.1)
    self.decoder.bias.data.fill_(0)
    self.decoder.weight.data.uniform_(-0.1, 0.1)

  def init_hidden(self, batch_size: int) -> Hidden:
    weight = self.encoder.weight
    return [(weight.new_zeros(1, batch_size, size), weight.new_zeros(1, batch_size, size)) for size in self.sizes]

  def forward(self, tokens_TxB: torch.Tensor, hidden: Hidden, masks: Masks):
    """(logits [T, B, V], new hidden, the last layer's raw output, its dropped output) with `masks`
    applied as the reference applies its own: embedded_dropout, LockedDropout and WeightDrop."""
    weight = self.encoder.weight
    if "embedding_V" in masks:
      weight = weight * masks["embedding_V"][:, None]
    x = F.embedding(tokens_TxB, weight)
    x = x * masks["input_BxE"] if "input_BxE" in masks else x
    new_hidden = []
    for k, rnn in enumerate(self.rnns):
      if isinstance(rnn, WeightDropped):
        raw, h = rnn(x, hidden[k], masks.get(f"w_hh_{k}"))
      else:
        raw, h = rnn(x, hidden[k])
      new_hidden.append(h)
      name = f"hidden_{k}_BxH" if k < len(self.rnns) - 1 else "output_BxH"
      x = raw * masks[name] if name in masks else raw
    return self.decoder(x), new_hidden, raw, x


class DropoutRates(NamedTuple):
  """main.py's five dropout flags (lm_jax's config.model fields of the same names)."""

  dropoute: float  # word types of the embedding (embedded_dropout)
  dropouti: float  # the embedding's output (LockedDropout)
  dropouth: float  # between layers (LockedDropout)
  dropout: float   # the last layer's output (LockedDropout)
  wdrop: float     # each hidden-to-hidden matrix (WeightDrop)


def sample_masks(model: AWDRNNModel, batch: int, rates: DropoutRates) -> Masks:
  """A training window's masks, drawn as the reference draws them in its forward, in its order: a keep (or not)
  per word type, per column and unit for the locked dropouts (every time step shares it), per W_hh entry;
  each scaled by 1 / (1 - p), and none for a zero rate (the reference then leaves the tensor alone)."""
  weight = model.encoder.weight
  vocab, emsize = weight.shape
  weight_drop = isinstance(model.rnns[0], WeightDropped)
  wanted = [("embedding_V", rates.dropoute, (vocab,)), ("input_BxE", rates.dropouti, (batch, emsize))]
  for k, size in enumerate(model.sizes):
    wanted.append((f"w_hh_{k}", rates.wdrop if weight_drop else 0.0, (4 * size, size)))
    last = k == len(model.sizes) - 1
    wanted.append(("output_BxH" if last else f"hidden_{k}_BxH", rates.dropout if last else rates.dropouth,
                   (batch, size)))
  return {name: weight.new_empty(shape).bernoulli_(1 - p) / (1 - p) for name, p, shape in wanted if p}


def variable_windows(rows: int, bptt: int, rng: np.random.RandomState) -> Iterator[tuple[int, int, float]]:
  """main.py's train() windows over `rows` batchified rows: (start, length, lr scale) per window. Each draws
  bptt with probability 0.95, else bptt / 2, then seq_len = max(5, int(N(that, 5))); get_batch cuts the window
  at the split's end, the lr is scaled by seq_len / bptt, and the next window starts seq_len rows on, while two
  rows remain. `rng`: np.random.RandomState(seed) draws what main.py draws from np.random after np.random.seed."""
  start = 0
  while start < rows - 1 - 1:
    mean = bptt if rng.random() < 0.95 else bptt / 2.0
    seq_len = max(5, int(rng.normal(mean, 5)))
    yield start, min(seq_len, rows - 1 - start), seq_len / bptt
    start += seq_len


def masks_from_jax(masks) -> Masks:
  """lm_jax's masks as torch tensors in the reference's layouts (w_hh: [G*H, H], transposed)."""
  return {name: torch.from_numpy(np.array(m.T if name.startswith("w_hh_") else m, np.float32))
          for name, m in masks.items()}


def detach(hidden: Hidden) -> Hidden:
  return [(h.detach(), c.detach()) for h, c in hidden]


def window_loss(model: AWDRNNModel, inputs_TxB, targets_TxB, hidden: Hidden, masks: Masks, alpha: float,
                beta: float):
  """main.py's train() loss: cross-entropy + alpha * AR on the dropped output + beta * TAR on the raw one;
  also the raw cross-entropy and the new hidden state."""
  logits_TxBxV, hidden, raw_TxBxH, dropped_TxBxH = model(inputs_TxB, detach(hidden), masks)
  raw_loss = F.cross_entropy(logits_TxBxV.flatten(0, 1), targets_TxB.flatten())
  loss = raw_loss + alpha * dropped_TxBxH.pow(2).mean() + beta * (raw_TxBxH[1:] - raw_TxBxH[:-1]).pow(2).mean()
  return loss, raw_loss, hidden


def train_step(model: AWDRNNModel, optimizer: torch.optim.Optimizer, inputs_TxB, targets_TxB, hidden: Hidden,
               masks: Masks, alpha: float, beta: float, clip: float, lr_scale: float = 1.0) -> tuple[float, Hidden]:
  """`train_window` with its raw loss read back as a float (a host sync)."""
  raw_loss, hidden = train_window(model, optimizer, inputs_TxB, targets_TxB, hidden, masks, alpha, beta, clip,
                                  lr_scale)
  return raw_loss.item(), hidden


def train_window(model: AWDRNNModel, optimizer: torch.optim.Optimizer, inputs_TxB, targets_TxB, hidden: Hidden,
                 masks: Masks, alpha: float, beta: float, clip: float,
                 lr_scale: float = 1.0, autocast_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, Hidden]:
  """One step of main.py's train(): the lr scaled for this step only, clip_grad_norm_, optimizer.step(); the
  raw cross-entropy (detached, left on the device as main.py's `raw_loss.data`) and the new hidden state. With
  an `autocast_dtype` (not main.py's), the loss runs under torch.autocast, the backward outside it."""
  lr = optimizer.param_groups[0]["lr"]
  optimizer.param_groups[0]["lr"] = lr * lr_scale
  model.train()
  optimizer.zero_grad()
  with torch.autocast(inputs_TxB.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
    loss, raw_loss, hidden = window_loss(model, inputs_TxB, targets_TxB, hidden, masks, alpha, beta)
  loss.backward()
  nn.utils.clip_grad_norm_(model.parameters(), clip)
  optimizer.step()
  optimizer.param_groups[0]["lr"] = lr
  return raw_loss.detach(), hidden


def averaged_params(model: AWDRNNModel, optimizer: torch.optim.ASGD) -> dict[str, torch.Tensor]:
  """What main.py evaluates and saves under ASGD: each parameter's `ax`, by state_dict name."""
  return {name: optimizer.state[p]["ax"].detach().clone() for name, p in model.named_parameters()}
