"""The recurrent and CNN -> RNN classifiers from torch.nn parts, with lm_jax's shapes and rules
(lm_jax/classify/models/rnn.py, cnn_rnn.py): nn.GRU / nn.LSTM / nn.RNN over packed sequences (each row runs
over its own real tokens only, the padding never enters the recurrence), the readout, and kim_cnn.py's Head.
The CNN -> RNN puts nn.Conv1d(padding='same'), ReLU and nn.functional.max_pool1d (ceil_mode, padding at -inf)
in front. Batches are right-padded, every row with at least one real token. `load_params(jax_params)`
copies an lm_jax classifier's parameters in, `grads_as_jax()` gives the gradients back (kim_cnn.JaxNamed).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torch_reference.kim_cnn import Embedder, Head, JaxNamed, Pairs, masked_max


def _recurrent(cell: str, size_in: int, nhid: int, nlayers: int, bias: bool) -> nn.Module:
  if cell == "lstm":
    return nn.LSTM(size_in, nhid, nlayers, bias=bias, batch_first=True)
  if cell == "gru":
    return nn.GRU(size_in, nhid, nlayers, bias=bias, batch_first=True)
  return nn.RNN(size_in, nhid, nlayers, nonlinearity=cell.removeprefix("rnn_"), bias=bias, batch_first=True)


class TorchRNNClassifier(JaxNamed):
  """forward(tokens_BxT int64, mask_BxT bool, keep_BxD=None) -> logits [B, C]."""

  def __init__(self, vocab_size: int, num_classes: int, emsize: int = 300, cell: str = "gru", nhid: int = 50,
               nlayers: int = 1, bias: bool = False, readout: str = "flatten", max_len: int = 50,
               embeddings: str = "rand", dropout: float = 0.0, hidden: int = 500, hidden_activation: str = "sigmoid",
               max_norm: float = 0.0, recurrent_input: int | None = None, recurrent_steps: int | None = None):
    super().__init__()
    self.cell, self.readout = cell, readout
    self.steps = recurrent_steps or max_len
    self.embedder = Embedder(vocab_size, emsize, embeddings)
    channels = 2 if embeddings == "multichannel" else 1
    self.rnn = _recurrent(cell, recurrent_input or channels * emsize, nhid, nlayers, bias)
    features = nhid * (self.steps if readout == "flatten" else 1)
    self.head = Head(features, num_classes, dropout, hidden, hidden_activation, max_norm)

  def front(self, x_BxTxI: torch.Tensor, mask_BxT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the recurrence reads: the embedded tokens here; cnn_rnn's pooled convolution."""
    return x_BxTxI, mask_BxT

  def forward(self, tokens_BxT: torch.Tensor, mask_BxT: torch.Tensor,
              keep_BxD: torch.Tensor | None = None) -> torch.Tensor:
    x_BxTxI, mask_BxT = self.front(self.embedder(tokens_BxT, mask_BxT), mask_BxT)
    lengths_B = mask_BxT.sum(dim=1).cpu()
    packed, h_n = self.rnn(pack_padded_sequence(x_BxTxI, lengths_B, batch_first=True, enforce_sorted=False))
    if self.readout == "final":
      return self.head((h_n[0] if self.cell == "lstm" else h_n)[-1], keep_BxD)
    total = self.steps if self.readout == "flatten" else x_BxTxI.shape[1]
    h_BxTxH, _ = pad_packed_sequence(packed, batch_first=True, total_length=total)  # zeros past each row's end
    if self.readout == "flatten":
      z_BxD = h_BxTxH.reshape(h_BxTxH.shape[0], -1)
    elif self.readout == "max":
      z_BxD = masked_max(h_BxTxH, mask_BxT)
    else:
      z_BxD = h_BxTxH.sum(dim=1) / lengths_B[:, None].to(h_BxTxH.dtype)
    return self.head(z_BxD, keep_BxD)

  def jax_pairs(self) -> Pairs:
    """lm_jax's layer_k_w_ih [I, G*H] is weight_ih_lk transposed (the same gate order)."""
    yield from self.embedder.jax_pairs()
    for name, parameter in self.rnn.named_parameters():
      kind, which, layer = name.split("_")  # weight_ih_l0 -> weight, ih, l0
      yield f"layer_{layer[1:]}_{kind[0]}_{which}", parameter, "linear" if kind == "weight" else "same"
    yield from self.head.jax_pairs()


class TorchCNNRNNClassifier(TorchRNNClassifier):
  """Conv1d(padding='same') -> ReLU -> max-pool over real positions -> TorchRNNClassifier's recurrence."""

  def __init__(self, vocab_size: int, num_classes: int, emsize: int = 300, conv_width: int = 3, conv_maps: int = 100,
               pool_size: int = 2, max_len: int = 50, embeddings: str = "rand", **rnn_fields):
    rnn_fields = dict(dict(bias=True, readout="final", hidden=50, hidden_activation="relu"), **rnn_fields)
    super().__init__(vocab_size, num_classes, emsize, max_len=max_len, embeddings=embeddings,
                     recurrent_input=conv_maps, recurrent_steps=math.ceil(max_len / pool_size), **rnn_fields)
    channels = 2 if embeddings == "multichannel" else 1
    self.conv = nn.Conv1d(channels * emsize, conv_maps, conv_width, padding="same")
    self.pool_size = pool_size

  def front(self, x_BxTxI: torch.Tensor, mask_BxT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c_BxFxT = torch.relu(self.conv(x_BxTxI.transpose(1, 2))).masked_fill(~mask_BxT[:, None, :], -torch.inf)
    pooled_BxFxN = F.max_pool1d(c_BxFxT, self.pool_size, ceil_mode=True)
    pooled_mask_BxN = F.max_pool1d(mask_BxT[:, None, :].float(), self.pool_size, ceil_mode=True)[:, 0] > 0
    return pooled_BxFxN.transpose(1, 2), pooled_mask_BxN

  def jax_pairs(self) -> Pairs:
    yield "conv_weight", self.conv.weight, "conv"
    yield "conv_bias", self.conv.bias, "same"
    yield from super().jax_pairs()
