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
filter's outputs are sums of shifted column blocks of the product. Those sums have a hand-written gradient:
autodiff's (one zero-padded copy of the whole product per block, added up) took 3/4 of Kim's CNN's training
step on a CPU; the blocks' cotangents, each padded to its shift and set side by side, are the same numbers
written once (Kim's CNN at MR's scale: the convolutions' gradient 245 -> 100 ms).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

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
  # Per filter: where its padded sequence begins, its windows, its width and its maps.
  blocks = tuple(_Block(pad - (w.shape[0] - 1), steps + w.shape[0] - 1, w.shape[0], w.shape[2]) for w in weights)
  return _shifted_block_sums(x_BxSxI @ w_IxC, blocks)


class _Block(NamedTuple):
  start: int
  windows: int
  width: int
  maps: int


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _shifted_block_sums(products_BxSxC: jax.Array, blocks: tuple[_Block, ...]) -> list[jax.Array]:
  """Filter i's outputs [B, windows_i, F_i]: the sum over k of its k-th column block, shifted by k steps."""
  outputs, column = [], 0
  for start, windows, width, maps in blocks:
    outputs.append(sum(products_BxSxC[:, start + k:start + k + windows, column + k * maps:column + (k + 1) * maps]
                       for k in range(width)))
    column += width * maps
  return outputs


def _shifted_block_sums_forward(products_BxSxC: jax.Array, blocks: tuple[_Block, ...]):
  return _shifted_block_sums(products_BxSxC, blocks), products_BxSxC.shape[1]


def _shifted_block_sums_backward(blocks: tuple[_Block, ...], steps: int,
                                 cotangents: list[jax.Array]) -> tuple[jax.Array]:
  # Column block k of filter i read rows start + k .. start + k + windows - 1: its cotangent is filter i's,
  # placed there; the blocks do not overlap, so the product's cotangent is them side by side.
  padded = [jnp.pad(g_BxNxF, ((0, 0), (start + k, steps - start - k - windows), (0, 0)))
            for (start, windows, width, _), g_BxNxF in zip(blocks, cotangents) for k in range(width)]
  return (jnp.concatenate(padded, axis=-1),)


_shifted_block_sums.defvjp(_shifted_block_sums_forward, _shifted_block_sums_backward)


def window_mask(mask_BxT: jax.Array, width: int) -> jax.Array:
  """[B, T + width - 1]: True where window t (tokens t-width+1 .. t) holds a real token."""
  steps = mask_BxT.shape[1]
  padded = jnp.pad(mask_BxT, ((0, 0), (width - 1, width - 1)))
  return jnp.any(jnp.stack([padded[:, k:k + steps + width - 1] for k in range(width)]), axis=0)
