"""BPT3C (Howard & Ruder 2018's backpropagation through time for text classification): a language model's recurrent
stack run over long documents in chunks of `bptt` steps with the state carried from chunk to chunk, the gradient and
the outputs to pool kept for each document's last `max_len` tokens only.

Each row's real tokens are first moved to the end of the batch's T positions (`right_aligned`: padding first), so that
every row's last max_len tokens sit in the same last L = min(max_len, T) positions, its tail. The P = T - L positions
before them, the prefix, are padded on the left to whole chunks (padding steps hold the state: the recurrence starts
at each row's first real token) and run chunk by chunk in a lax.scan that carries the state, under stop_gradient: no
gradient flows there, so no activations are kept, and the prefix needs the memory of one chunk whatever its length.
The tail then runs from the prefix's final state in one pass, and its outputs are what the classifier pools. Its
gradient runs through the whole tail: the exact gradient of the tail for the given prefix state (fastai also cuts the
gradient at each chunk boundary inside the tail). Run in chunks with the state carried, the tail gives the same values
as in one pass, which is one scan with less overhead; documents no longer than max_len have no prefix at all.

Dropout is the language model's own (its `features` with `train`): AWD-LSTM's masks are drawn once per batch and used
for every chunk, as for one window of the LM, so that chunking changes nothing; the plain dropout draws a fresh key per
chunk. The encoder's layers always run the scan backend (its per-row masks; cuDNN's kernel has none).

Memory (float32, B rows, layers k with input I_k, H_k units and G_k = gates x H_k): the tail keeps for its backward
pass about 4 B L sum_k (I_k + 2 G_k + 3 H_k) bytes (each layer's input, the input projection and hidden-to-hidden
products of every step, the incoming state and the output), the prefix about 4 B bptt sum_k (G_k + 2 H_k) bytes at a
time, plus the embedding rows of the batch. AWD-LSTM 400/1150x2/400 at B 32 and L 1400 keeps ~6.7 GB for the tail; the
3-layer 200/400x2/200 LSTM of configs/ulmfit.py at B 32 and L 400, ~0.5 GB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lm_jax.models.interface import Params
from lm_jax.models.rnn_model import RNNModel


def right_aligned(tokens_BxT: jax.Array, mask_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Each row's run of real tokens (one contiguous run, anywhere in the row) moved to the row's end, padding first."""
  steps = tokens_BxT.shape[1]
  start_B = steps - jnp.sum(mask_BxT, axis=1)
  source_BxT = (jnp.arange(steps)[None, :] - start_B[:, None] + jnp.argmax(mask_BxT, axis=1)[:, None]) % steps
  return jnp.take_along_axis(tokens_BxT, source_BxT, axis=1), jnp.arange(steps)[None, :] >= start_B[:, None]


def tail_outputs(lm: RNNModel, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array, *, bptt: int,
                 max_len: int, train: bool, rng: jax.Array | None,
                 masks: dict[str, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
  """The LM's top-layer outputs (before its output dropout) over each row's last `max_len` real tokens, [B, L, H],
  and their mask [B, L] (right-aligned: real tokens at the end). `params` hold the LM's parameters. In training,
  AWD-LSTM's `masks` (lm.dropout_masks) for the batch, by default drawn from `rng`."""
  tokens_BxT, mask_BxT = right_aligned(tokens_BxT, mask_BxT)
  batch, steps = tokens_BxT.shape
  prefix = steps - min(max_len, steps)
  if train and masks is None:
    masks = lm.dropout_masks(jax.random.fold_in(rng, 1), batch)
  key = lambda k: jax.random.fold_in(rng, k) if train else None

  def run(params: Params, tokens_BxC: jax.Array, mask_BxC: jax.Array, carry, rng: jax.Array | None):
    return lm.features(params, tokens_BxC.T, carry, mask_BxC.T[..., None], train=train, rng=rng, masks=masks)

  carry = lm.init_carry(batch)
  if prefix:
    chunks = -(-prefix // bptt)
    pad = ((0, 0), (chunks * bptt - prefix, 0))  # on the left: steps that hold the zero state
    by_chunk = lambda x_BxP: jnp.pad(x_BxP, pad).reshape(batch, chunks, bptt).swapaxes(0, 1)
    frozen = jax.lax.stop_gradient(params)  # nothing else in the prefix is differentiable: its state has no gradient

    def chunk(carry, inputs):
      tokens_BxC, mask_BxC, k = inputs
      return run(frozen, tokens_BxC, mask_BxC, carry, key(k + 2)).carry, None

    carry, _ = jax.lax.scan(chunk, carry, (by_chunk(tokens_BxT[:, :prefix]), by_chunk(mask_BxT[:, :prefix]),
                                           jnp.arange(chunks)))
  out = run(params, tokens_BxT[:, prefix:], mask_BxT[:, prefix:], carry, key(0))
  return jnp.swapaxes(out.aux["top_raw_TxBxH"], 0, 1), mask_BxT[:, prefix:]
