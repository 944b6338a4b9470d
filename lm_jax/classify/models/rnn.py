"""The recurrent classifier (config.model.kind = "rnn"): stacked LSTM/GRU/RNN layers over each row's real
tokens, a readout of the top layer, then the head (interface.py).

  layer_k_w_ih [I_k, G*H], layer_k_w_hh [H, G*H]   torch's weight_ih_lk.T, weight_hh_lk.T (gates as cells.py)
  layer_k_b_ih [G*H], layer_k_b_hh [G*H]           torch's bias_ih_lk, bias_hh_lk (absent with bias=False)

The layers are the language model's: cells.py's steps run by recurrence.run_layer (one input projection for
all steps, the scanned hidden-to-hidden part, the hand-written gradient), from a zero state. run_layer holds
the state wherever its mask is False; given the per-row mask [T, B, 1] (it broadcasts over H), each row's
state stops at its own last real token, whatever padding follows.

Readouts of the top layer's outputs h_t:
- 'final': the state after each row's last real token (torch's h_n over a packed sequence).
- 'max', 'mean': max / mean of h_t over the real tokens (pooling.py).
- 'flatten': h_t of the first `max_len` steps, zero at padding (batches shorter than max_len are padded),
  side by side: [B, max_len * H]. The brief's GRU classifier (DESIGN.md), which these defaults build: 50
  words, embedding 300, GRU(300 -> 50, no bias), the 50x50 outputs flattened -> linear 500 (sigmoid) -> linear.
Init: torch's U(-1/sqrt(H), 1/sqrt(H)) for every recurrent weight and bias.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.classify.models.embedding_classifier import EmbeddingClassifier
from lm_jax.classify.models.interface import Params, uniform
from lm_jax.classify.models.pooling import masked_max, masked_mean
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS
from lm_jax.models.recurrence import run_layer

READOUTS = ("final", "max", "mean", "flatten")


@dataclasses.dataclass(frozen=True)
class RNNClassifier(EmbeddingClassifier):
  """Recurrent layers and a readout; fields as config.model's. The defaults are the brief's GRU classifier."""

  kind = "rnn"

  hidden: int = 500
  cell: str = "gru"               # one of cells.CELLS: lstm, gru, rnn_tanh, rnn_relu
  nhid: int = 50
  nlayers: int = 1
  bias: bool = False              # the recurrent layers' biases (torch's bias=)
  readout: str = "flatten"        # one of READOUTS
  max_len: int = 50               # tokens the 'flatten' readout reads (the data's maximum length)
  unroll: int = 1                 # lax.scan unroll of the recurrence's forward

  def validate(self) -> None:
    super().validate()
    if self.cell not in CELLS:
      raise UserError(f"unknown config.model.cell {self.cell!r}; use one of {', '.join(CELLS)}")
    if self.readout not in READOUTS:
      raise UserError(f"unknown config.model.readout {self.readout!r}; use one of {', '.join(READOUTS)}")
    for name in ("nhid", "nlayers", "unroll", "max_len"):
      if getattr(self, name) < 1:
        raise UserError(f"config.model.{name} must be >= 1 (got {getattr(self, name)}); pass e.g. "
                        f"--config.model.{name}=1")

  def describe_features(self) -> str:
    bias = "" if self.bias else ", no bias"
    readout = f"flatten {self.max_len} steps" if self.readout == "flatten" else self.readout
    return f"{self.cell} {self.nlayers}x{self.nhid}{bias}, {readout} readout"

  # The recurrence's input and length; cnn_rnn.py puts a convolution and pooling in front.
  @property
  def recurrent_input_size(self) -> int:
    return self.input_size

  @property
  def recurrent_steps(self) -> int:
    """Steps the recurrence runs on a max_len-token batch."""
    return self.max_len

  @property
  def features_size(self) -> int:
    return self.nhid * (self.recurrent_steps if self.readout == "flatten" else 1)

  def init_features(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    gates = CELLS[self.cell].num_gates * self.nhid
    shapes = {}
    for k in range(self.nlayers):
      shapes[f"layer_{k}_w_ih"] = (self.recurrent_input_size if k == 0 else self.nhid, gates)
      shapes[f"layer_{k}_w_hh"] = (self.nhid, gates)
      if self.bias:
        shapes.update({f"layer_{k}_b_ih": (gates,), f"layer_{k}_b_hh": (gates,)})
    return {name: uniform(rng, shape, 1.0 / self.nhid ** 0.5) for name, shape in shapes.items()}

  def recurrence(self, params: Params, x_BxTxI: jax.Array, mask_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The top layer's outputs h_TxBxH (past a row's end: whatever the cell computed) and its final h [B, H]."""
    cell = CELLS[self.cell]
    x = jnp.swapaxes(x_BxTxI, 0, 1)
    batch, gates = x.shape[1], cell.num_gates * self.nhid
    real_TxBx1 = jnp.swapaxes(mask_BxT, 0, 1)[..., None]
    no_bias = jnp.zeros(gates, x.dtype)
    for k in range(self.nlayers):
      weights = {name: params.get(f"layer_{k}_{name}", no_bias) for name in ("w_ih", "w_hh", "b_ih", "b_hh")}
      state = tuple(jnp.zeros((batch, self.nhid), x.dtype) for _ in range(cell.num_states))
      x, state = run_layer(cell, weights, x, state, real_TxBx1, self.unroll)
    return x, state[0]

  def features(self, params: Params, x_BxTxI: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    h_TxBxH, final_BxH = self.recurrence(params, x_BxTxI, mask_BxT)
    if self.readout == "final":
      return final_BxH
    h_BxTxH = jnp.swapaxes(h_TxBxH, 0, 1)
    if self.readout == "max":
      return masked_max(h_BxTxH, mask_BxT)
    if self.readout == "mean":
      return masked_mean(h_BxTxH, mask_BxT)
    batch, steps, _ = h_BxTxH.shape
    if steps > self.recurrent_steps:
      raise UserError(f"the 'flatten' readout reads {self.recurrent_steps} steps but the batch has {steps}; cut the "
                      f"data to config.model.max_len={self.max_len} tokens")
    h_BxTxH = h_BxTxH * mask_BxT[..., None].astype(h_BxTxH.dtype)
    return jnp.pad(h_BxTxH, ((0, 0), (0, self.recurrent_steps - steps), (0, 0))).reshape(batch, -1)
