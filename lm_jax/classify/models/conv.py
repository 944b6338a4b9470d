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
filter's outputs are sums of its column blocks of the product, block k shifted down by w-1-k rows. The zero
rows of the wide padding would only add zero products, so they are never multiplied: each shifted block is
padded with zeros instead. The sums have a hand-written gradient, in which block k's cotangent is a slice of
the filter's: autodiff's (one zero-padded copy of the whole product per block, added up) took 3/4 of Kim's
CNN's training step on a CPU (Kim's CNN at MR's scale: the convolutions' gradient 245 -> 100 ms).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


def wide_convs(x_BxTxI: jax.Array, weights: Sequence[jax.Array]) -> list[jax.Array]:
  """Each filter bank `weights[i]` [w_i, I, F_i] (W_k = weights[i][k], no bias) over the zero-padded sequence:
  a list of [B, T + w_i - 1, F_i]."""
  # [I, sum w*F]: filter i's W_0 .. W_{w-1} side by side.
  w_IxC = jnp.concatenate([jnp.moveaxis(w, 1, 0).reshape(w.shape[1], -1) for w in weights], axis=1)
  return _shifted_block_sums(x_BxTxI @ w_IxC, tuple(_Filter(w.shape[0], w.shape[2]) for w in weights))


class _Filter(NamedTuple):
  width: int
  maps: int


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _shifted_block_sums(products_BxTxC: jax.Array, filters: tuple[_Filter, ...]) -> list[jax.Array]:
  """Filter i's outputs [B, T + w_i - 1, F_i]: window t = sum over k of product row t - (w_i - 1 - k) of its k-th
  column block (zero outside the T rows)."""
  outputs, column = [], 0
  for width, maps in filters:
    blocks = [products_BxTxC[..., column + k * maps:column + (k + 1) * maps] for k in range(width)]
    outputs.append(sum(jnp.pad(block, ((0, 0), (width - 1 - k, k), (0, 0))) for k, block in enumerate(blocks)))
    column += width * maps
  return outputs


def _shifted_block_sums_forward(products_BxTxC: jax.Array, filters: tuple[_Filter, ...]):
  return _shifted_block_sums(products_BxTxC, filters), products_BxTxC.shape[1]


def _shifted_block_sums_backward(filters: tuple[_Filter, ...], steps: int,
                                 cotangents: list[jax.Array]) -> tuple[jax.Array]:
  # Product row r of block k went to window r + w - 1 - k alone: its cotangent is that window's.
  blocks = [g_BxNxF[:, width - 1 - k:width - 1 - k + steps]
            for (width, _), g_BxNxF in zip(filters, cotangents) for k in range(width)]
  return (jnp.concatenate(blocks, axis=-1),)


_shifted_block_sums.defvjp(_shifted_block_sums_forward, _shifted_block_sums_backward)


def window_mask(mask_BxT: jax.Array, width: int) -> jax.Array:
  """[B, T + width - 1]: True where window t (tokens t-width+1 .. t) holds a real token."""
  steps = mask_BxT.shape[1]
  padded = jnp.pad(mask_BxT, ((0, 0), (width - 1, width - 1)))
  return jnp.any(jnp.stack([padded[:, k:k + steps + width - 1] for k in range(width)]), axis=0)
