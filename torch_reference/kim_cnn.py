"""Kim's CNN (Kim 2014, yoonkim/CNN_sentence) from torch.nn parts, with lm_jax's shapes and rules
(lm_jax/classify/models/kim_cnn.py): nn.Embedding (a frozen second one for multichannel), one nn.Conv1d per
filter width with padding w - 1 (the wide convolution), ReLU, max over the windows that hold a real token,
Kim's dropout (keep or zero in training, scale by 1 - p in evaluation), an optional hidden nn.Linear, the
output nn.Linear, and Kim's max-norm on the head's weights after each update. Also the parts the recurrent
references share (rnn_classifiers.py): `Head`, `masked_max`, `make_optimizer` (torch.optim.Adadelta, Kim's
rho 0.95, eps 1e-6) and `train_step`.

`load_params(jax_params)` copies an lm_jax classifier's parameters in and `grads_as_jax()` gives the gradients
under lm_jax's names and layouts; lm_jax is checked against this module (tests/test_classify_models.py) and
timed against it (the classification benchmark).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


# lm_jax name, the torch parameter, and how its layout differs: "same", "linear" (lm_jax's [in, out] is
# nn.Linear's weight transposed), "conv" (lm_jax's [w, I, F] is nn.Conv1d's [F, I, w] permuted). Both maps are
# their own inverse.
Pairs = Iterator[tuple[str, nn.Parameter, str]]


def _relayout(value: torch.Tensor, layout: str) -> torch.Tensor:
  if layout == "linear":
    return value.T
  return value.permute(2, 1, 0) if layout == "conv" else value


class JaxNamed(nn.Module):
  """A module whose parameters map one to one onto an lm_jax classifier's (`jax_pairs`)."""

  def jax_pairs(self) -> Pairs:
    raise NotImplementedError

  def load_params(self, jax_params: Mapping[str, np.ndarray]) -> None:
    for name, parameter, layout in self.jax_pairs():
      parameter.data.copy_(_relayout(torch.from_numpy(np.array(jax_params[name], np.float32)), layout))

  def grads_as_jax(self) -> dict[str, np.ndarray]:
    return {name: _relayout(parameter.grad, layout).numpy() for name, parameter, layout in self.jax_pairs()
            if parameter.grad is not None}


def masked_max(x_BxTxH: torch.Tensor, mask_BxT: torch.Tensor) -> torch.Tensor:
  """max over the real positions of each row [B, H]; 0 for a row with none."""
  real_BxTx1 = mask_BxT[..., None]
  max_BxH = x_BxTxH.masked_fill(~real_BxTx1, -torch.inf).amax(dim=1)
  return torch.where(real_BxTx1.any(dim=1), max_BxH, torch.zeros_like(max_BxH))


class Embedder(JaxNamed):
  """Kim's embedding variants: the trained (or, 'static', frozen) nn.Embedding, and multichannel's frozen
  second one; padded positions embed to zero vectors."""

  def __init__(self, vocab_size: int, emsize: int, embeddings: str):
    super().__init__()
    self.embedding = nn.Embedding(vocab_size, emsize)
    self.embedding.weight.requires_grad_(embeddings != "static")
    self.static = nn.Embedding(vocab_size, emsize) if embeddings == "multichannel" else None
    if self.static is not None:
      self.static.weight.requires_grad_(False)

  def forward(self, tokens_BxT: torch.Tensor, mask_BxT: torch.Tensor) -> torch.Tensor:
    channels = [self.embedding(tokens_BxT)] + ([self.static(tokens_BxT)] if self.static is not None else [])
    return torch.cat(channels, dim=-1) * mask_BxT[..., None]

  def jax_pairs(self) -> Pairs:
    yield "embedding", self.embedding.weight, "same"
    if self.static is not None:
      yield "embedding_static", self.static.weight, "same"


class Head(JaxNamed):
  """Kim's dropout on the features, an optional hidden layer, the output layer; Kim's max-norm."""

  def __init__(self, features: int, num_classes: int, dropout: float, hidden: int, hidden_activation: str,
               max_norm: float):
    super().__init__()
    self.dropout, self.max_norm, self.activation = dropout, max_norm, ACTIVATIONS[hidden_activation]
    self.hidden = nn.Linear(features, hidden) if hidden else None
    self.output = nn.Linear(hidden or features, num_classes)

  def forward(self, z_BxD: torch.Tensor, keep_BxD: torch.Tensor | None) -> torch.Tensor:
    if self.dropout and self.training:
      if keep_BxD is None:
        keep_BxD = torch.bernoulli(torch.full_like(z_BxD, 1.0 - self.dropout))
      z_BxD = z_BxD * keep_BxD
    elif self.dropout:
      z_BxD = z_BxD * (1.0 - self.dropout)
    if self.hidden is not None:
      z_BxD = self.activation(self.hidden(z_BxD))
    return self.output(z_BxD)

  @torch.no_grad()
  def apply_max_norm_(self) -> None:
    """Each output unit's weights (a row of nn.Linear's [out, in]) rescaled by min(norm, s) / (1e-7 + norm)."""
    if not self.max_norm:
      return
    for linear in filter(None, (self.hidden, self.output)):
      norms_Ox1 = linear.weight.norm(dim=1, keepdim=True)
      linear.weight.mul_(norms_Ox1.clamp(max=self.max_norm) / (1e-7 + norms_Ox1))

  def jax_pairs(self) -> Pairs:
    for name, linear in (("hidden", self.hidden), ("output", self.output)):
      if linear is not None:
        yield f"{name}_weight", linear.weight, "linear"
        yield f"{name}_bias", linear.bias, "same"


class TorchKimCNN(JaxNamed):
  """forward(tokens_BxT int64, mask_BxT bool, keep_BxD=None) -> logits [B, C]."""

  def __init__(self, vocab_size: int, num_classes: int, emsize: int = 300, filter_widths: Sequence[int] = (3, 4, 5),
               filter_maps: int = 100, embeddings: str = "rand", dropout: float = 0.5, hidden: int = 0,
               hidden_activation: str = "sigmoid", max_norm: float = 3.0):
    super().__init__()
    channels = 2 if embeddings == "multichannel" else 1
    self.embedder = Embedder(vocab_size, emsize, embeddings)
    self.convs = nn.ModuleList(nn.Conv1d(channels * emsize, filter_maps, width, padding=width - 1)
                               for width in filter_widths)
    self.head = Head(len(filter_widths) * filter_maps, num_classes, dropout, hidden, hidden_activation, max_norm)

  def forward(self, tokens_BxT: torch.Tensor, mask_BxT: torch.Tensor,
              keep_BxD: torch.Tensor | None = None) -> torch.Tensor:
    x_BxIxT = self.embedder(tokens_BxT, mask_BxT).transpose(1, 2)
    pooled = []
    for conv in self.convs:
      width = conv.kernel_size[0]
      c_BxFxN = torch.relu(conv(x_BxIxT))
      # Window t covers tokens t-width+1 .. t: real if any of them is.
      real_BxN = F.pad(mask_BxT.float(), (width - 1, width - 1)).unfold(1, width, 1).amax(dim=-1) > 0
      pooled.append(masked_max(c_BxFxN.transpose(1, 2), real_BxN))
    return self.head(torch.cat(pooled, dim=-1), keep_BxD)

  def jax_pairs(self) -> Pairs:
    yield from self.embedder.jax_pairs()
    for i, conv in enumerate(self.convs):
      yield f"conv_{i}_weight", conv.weight, "conv"
      yield f"conv_{i}_bias", conv.bias, "same"
    yield from self.head.jax_pairs()


def make_optimizer(model: nn.Module) -> torch.optim.Adadelta:
  """Kim's Adadelta (rho 0.95, eps 1e-6, lr 1) over the trained parameters."""
  return torch.optim.Adadelta([p for p in model.parameters() if p.requires_grad], lr=1.0, rho=0.95, eps=1e-6)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, tokens_BxT: torch.Tensor, mask_BxT: torch.Tensor,
               labels_B: torch.Tensor, keep_BxD: torch.Tensor | None = None) -> float:
  """One update: mean cross-entropy, backward, the optimiser's step, then Kim's max-norm. Returns the loss."""
  model.train()
  optimizer.zero_grad()
  loss = F.cross_entropy(model(tokens_BxT, mask_BxT, keep_BxD), labels_B)
  loss.backward()
  optimizer.step()
  model.head.apply_max_norm_()
  return loss.item()
