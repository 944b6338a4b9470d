"""Wide 1-D convolutions over a padded batch, several filter widths from one matmul.

A filter of width w reads windows of w consecutive tokens. "Wide" (Kalchbrenner et al.; what Kim's w-1 zero
rows on each side give): the sequence is padded with w-1 zero vectors on each side, so there are T + w - 1
windows and window t covers tokens t-w+1 .. t; every token, even in a sentence shorter than w, is seen by w
windows. Padded positions of the batch must hold zero vectors (EmbeddingClassifier.embed zeroes them), so a
window mixing real tokens and padding equals the same window of the unpadded sentence with Kim's zero rows.
`window_mask` marks the windows that hold at least one real token: those are the windows of the sentence
itself, whatever padding the batch added.

Why one matmul: window t of width w is sum_k x[t+k-(w-1)] W_k. All filters' W_k side by side make one
[I, sum_w w*F] matrix, so the input is read once, in one large matmul (XLA:CPU's fast path), and each
filter's outputs are sums of shifted column blocks of the product.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def wide_convs(x_BxTxI: jax.Array, weights: Sequence[jax.Array]) -> list[jax.Array]:
  """Each filter bank `weights[i]` [w_i, I, F_i] (W_k = weights[i][k], no bias) over the zero-padded sequence:
  a list of [B, T + w_i - 1, F_i]."""
  steps = x_BxTxI.shape[1]
  pad = max(w.shape[0] for w in weights) - 1
  x_BxSxI = jnp.pad(x_BxTxI, ((0, 0), (pad, pad), (0, 0)))
  # [I, sum w*F]: filter i's W_0 .. W_{w-1} side by side.
  w_IxC = jnp.concatenate([jnp.moveaxis(w, 1, 0).reshape(w.shape[1], -1) for w in weights], axis=1)
  products_BxSxC = x_BxSxI @ w_IxC
  outputs, column = [], 0
  for w in weights:
    width, _, maps = w.shape
    start, windows = pad - (width - 1), steps + width - 1  # where this filter's padded sequence begins
    outputs.append(sum(products_BxSxC[:, start + k:start + k + windows, column + k * maps:column + (k + 1) * maps]
                       for k in range(width)))
    column += width * maps
  return outputs


def window_mask(mask_BxT: jax.Array, width: int) -> jax.Array:
  """[B, T + width - 1]: True where window t (tokens t-width+1 .. t) holds a real token."""
  steps = mask_BxT.shape[1]
  padded = jnp.pad(mask_BxT, ((0, 0), (width - 1, width - 1)))
  return jnp.any(jnp.stack([padded[:, k:k + steps + width - 1] for k in range(width)]), axis=0)
