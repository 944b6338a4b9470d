"""Pooling over the real tokens of a padded batch: the one place where masks meet max and mean.

A batch is `x_BxTxH` with `mask_BxT` True at real positions (padding may sit anywhere; the batching puts it
on the right). A row with no real position pools to 0, so that a filler row in a fixed-shape batch gives
finite logits and gradients instead of -inf or 0/0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_max(x_BxTxH: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """max over the real positions of each row [B, H] (max-over-time pooling)."""
  real_BxTx1 = mask_BxT[..., None]
  max_BxH = jnp.max(jnp.where(real_BxTx1, x_BxTxH, -jnp.inf), axis=1)
  return jnp.where(jnp.any(real_BxTx1, axis=1), max_BxH, 0.0)


def masked_mean(x_BxTxH: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """mean over the real positions of each row [B, H]."""
  real_BxTx1 = mask_BxT[..., None].astype(x_BxTxH.dtype)
  return jnp.sum(x_BxTxH * real_BxTx1, axis=1) / jnp.maximum(jnp.sum(real_BxTx1, axis=1), 1.0)


def masked_last(x_BxTxH: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """x at each row's last real position [B, H]."""
  steps = x_BxTxH.shape[1]
  last_B = steps - 1 - jnp.argmax(mask_BxT[:, ::-1], axis=1)
  last_BxH = jnp.take_along_axis(x_BxTxH, last_B[:, None, None], axis=1)[:, 0]
  return jnp.where(jnp.any(mask_BxT, axis=1, keepdims=True), last_BxH, 0.0)


def concat_pool(x_BxTxH: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """ULMFiT's concat pooling [B, 3H]: [x at the last real position, max, mean over the real positions] (fastai's
  masked_concat_pool, in its order)."""
  return jnp.concatenate([masked_last(x_BxTxH, mask_BxT), masked_max(x_BxTxH, mask_BxT),
                          masked_mean(x_BxTxH, mask_BxT)], axis=1)


def max_pool(x_BxTxH: jax.Array, mask_BxT: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
  """Non-overlapping max pooling over time in groups of `size` steps (the last group short when T is not a
  multiple), each group's max over its real steps: [B, ceil(T/size), H] and the mask of groups holding a real
  step (right padding stays right padding)."""
  batch, steps, width = x_BxTxH.shape
  groups = -(-steps // size)
  extra = groups * size - steps
  x_BxNxH = jnp.pad(x_BxTxH, ((0, 0), (0, extra), (0, 0))).reshape(batch * groups, size, width)
  mask_BxN = jnp.pad(mask_BxT, ((0, 0), (0, extra))).reshape(batch * groups, size)
  pooled = masked_max(x_BxNxH, mask_BxN).reshape(batch, groups, width)
  return pooled, jnp.any(mask_BxN, axis=1).reshape(batch, groups)
