"""The rnn family's recurrent layer by backend (config.model.rnn_backend): 'scan', recurrence.run_layer (every
cell, every device), or the opt-in 'cudnn', each LSTM layer as one cuDNN kernel forward and one backward,
through jax.experimental.rnn.

The cuDNN layer computes what the scan computes, from the same parameters: cuDNN takes a layer's weights as one
flat array, W_ih [4H, I] and W_hh [4H, H] as PyTorch stores them (gates i, f, g, o, row-major), then b_ih and
b_hh. The layer packs the rnn family's x @ W parameters into it inside the step, so gradients reach the same
parameters and checkpoints are the same for both backends. Padding steps past the window's length are cuDNN's
sequence lengths (the state after `length` steps comes back, as the scan holds it).

Where it applies: a GPU, the LSTM cell, float32 matmuls (jax.experimental.rnn has no bfloat16), and nothing
inside the recurrence but the cell: AWD-LSTM's weight drop (a new W_hh mask per window) and locked dropout
are refused. The word_language_model's dropout, on the embedding, between layers and on the output, stays
outside the layer, the same for both backends. Under JAX_DEFAULT_MATMUL_PRECISION=highest cuDNN runs without
TF32, as the scan's matmuls do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from jax.experimental import rnn

from lm_jax.errors import UserError
from lm_jax.models.cells import Cell, State
from lm_jax.models.recurrence import Weights, run_layer as scan_layer


def cudnn_weights(weights: Weights) -> jax.Array:
  """One layer's flat cuDNN weight array from its w_ih [I, 4H], w_hh [H, 4H], b_ih [4H], b_hh [4H]."""
  return jnp.concatenate([weights["w_ih"].T.ravel(), weights["w_hh"].T.ravel(), weights["b_ih"], weights["b_hh"]])


def cudnn_layer(cell: Cell, weights: Weights, x_TxBxI: jax.Array, state: State, valid_T: jax.Array,
                unroll: int = 1, matmul_dtype: str = "float32") -> tuple[jax.Array, State]:
  """recurrence.run_layer's contract for the LSTM (`validate` refused every other case): the outputs h_TxBxH
  and the state after the window's valid steps, a prefix of `valid_T`."""
  del cell, unroll, matmul_dtype  # the LSTM in float32; cuDNN runs its own loop
  input_size, gates = weights["w_ih"].shape
  h_BxH, c_BxH = state
  lengths_B = jnp.full(x_TxBxI.shape[1], jnp.sum(valid_T, dtype=jnp.int32))
  y_BxTxH, h_1xBxH, c_1xBxH = rnn.lstm(jnp.swapaxes(x_TxBxI, 0, 1), h_BxH[None], c_BxH[None], cudnn_weights(weights),
                                       lengths_B, input_size=input_size, hidden_size=gates // 4, num_layers=1,
                                       dropout=0.0, bidirectional=False)
  return jnp.swapaxes(y_BxTxH, 0, 1), (h_1xBxH[0], c_1xBxH[0])


LAYERS = {"scan": scan_layer, "cudnn": cudnn_layer}  # config.model.rnn_backend -> the layer function


def validate(m: ml_collections.ConfigDict) -> None:
  """config.model.rnn_backend: a known one, and 'cudnn' only where it runs what the scan would."""
  if m.rnn_backend not in LAYERS:
    raise UserError(f"unknown config.model.rnn_backend {m.rnn_backend!r}; use one of {', '.join(LAYERS)}")
  if m.rnn_backend == "scan":
    return
  unsupported = [
      (m.cell != "lstm", f"runs the LSTM cell only (got {m.cell!r})"),
      (m.matmul_dtype != "float32", f"runs float32 only (got matmul_dtype {m.matmul_dtype!r})"),
      (m.wdrop > 0, "cannot apply weight drop (config.model.wdrop), a mask on W_hh inside the recurrence"),
      (m.locked_dropout, "is not for AWD-LSTM's locked dropout (config.model.locked_dropout)"),
      (jax.default_backend() != "gpu", f"needs a GPU, and JAX runs on {jax.default_backend()} here"),
  ]
  for refused, why in unsupported:
    if refused:
      raise UserError(f"config.model.rnn_backend='cudnn' {why}; pass --config.model.rnn_backend=scan")


def reference_lstm(x_BxTxI: jax.Array, h_0: jax.Array, c_0: jax.Array, weights: jax.Array, seq_lengths: jax.Array,
                   input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool,
                   precision=None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """What rnn.lstm computes, on any device: jax.experimental.rnn's own reference (lstm_ref) on the flat weights
  unpacked by its own layout. Stands in for the kernel where there is no GPU, to check everything around it."""
  del precision
  unpacked = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
  return rnn.lstm_ref(x_BxTxI, h_0, c_0, *unpacked, seq_lengths, input_size, hidden_size, num_layers, dropout,
                      bidirectional)
