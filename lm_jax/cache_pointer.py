"""The continuous cache pointer (Grave et al. 2017), as salesforce/awd-lstm-lm's pointer.py applies it.

At position t of a column, with features h_t (the last layer's output, what the decoder reads) and the
cache of the previous `window` positions i (their features h_i and the word that followed them, w_i):

  p_cache(w | t) = sum_{i in [t - window, t), w_i = w} softmax_i(theta * <h_t, h_i>)
  p(w | t)       = (1 - lambda) p_model(w | t) + lambda p_cache(w | t)

The mixture is applied at positions t > window (t counted from 0 at the column's first input), as the
reference's first chunk does; earlier positions are scored by the model alone. Only the probability of
the target is needed, so the [V] pointer distribution is never built: the pointer mass on the target is
the attention summed over the cache entries whose word is the target.

The cache of each column is carried from window to window as a sliding buffer of the last `window`
(features, next word) pairs; columns never see each other's cache, so batch B scores each column exactly
as batch 1 would score it alone.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class CachePointer:
  """pointer.py's --window, --theta and --lambdasm."""

  window: int
  theta: float
  lam: float

  def validate(self) -> None:
    """Raises UserError naming the bad value and the fix."""
    if self.window <= 0:
      raise UserError(f"--cache_window must be > 0 (got {self.window}); pass e.g. --cache_window=500")
    if self.theta < 0:
      raise UserError(f"--cache_theta must be >= 0 (got {self.theta}); pass e.g. --cache_theta=1.0")
    if not 0.0 <= self.lam <= 1.0:
      raise UserError(f"--cache_lambda must be in [0, 1] (got {self.lam}); pass e.g. --cache_lambda=0.1")

  def check_split(self, rows: int, name: str) -> None:
    """The cache needs positions past the window: refuse a split (per column) no longer than it."""
    if rows - 1 <= self.window:
      raise UserError(f"the {name} split has {rows - 1:,} positions per column, not more than --cache_window="
                      f"{self.window}; pass a smaller --cache_window (or a smaller --batch_size)")


# awd-lstm-lm README: `pointer.py --lambdasm 0.1 --theta 1.0 --window 500` (PTB) and
# `--lambdasm 0.1279 --theta 0.662 --window 3785` (WikiText-2).
PRESETS = {"ptb": CachePointer(window=500, theta=1.0, lam=0.1),
           "wt2": CachePointer(window=3785, theta=0.662, lam=0.1279)}

# --cache_search's grid, on validation.
SEARCH_THETAS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
SEARCH_LAMBDAS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


class CacheState(NamedTuple):
  """The last `window` positions of each column, oldest first."""

  keys_NxBxH: jax.Array  # their features
  words_NxB: jax.Array   # the word that followed each (its target)


def init_state(window: int, batch_size: int, features: jax.ShapeDtypeStruct) -> CacheState:
  """An empty cache; its zeros are never read (the mixture starts at position window + 1)."""
  hidden = features.shape[-1]
  return CacheState(jnp.zeros((window, batch_size, hidden), features.dtype),
                    jnp.zeros((window, batch_size), jnp.int32))


def score(state: CacheState, features_TxBxH: jax.Array, targets_TxB: jax.Array, nll_TxB: jax.Array,
          start: jax.Array, length: jax.Array, theta_G: jax.Array, lam_G: jax.Array
          ) -> tuple[jax.Array, CacheState]:
  """-log p(target) under the mixture for each of G (theta, lambda) pairs, [G, T, B], and the cache after
  the window's `length` valid steps. `start` is the window's first position in the column."""
  window, steps = state.keys_NxBxH.shape[0], features_TxBxH.shape[0]
  # Entry k of the concatenation is position start - window + k: the query at step t reads entries
  # t .. t + window - 1, i.e. positions start + t - window .. start + t - 1.
  keys_KxBxH = jnp.concatenate([state.keys_NxBxH, features_TxBxH], axis=0)
  words_KxB = jnp.concatenate([state.words_NxB, targets_TxB], axis=0)
  k_K, t_T = jnp.arange(window + steps), jnp.arange(steps)
  in_window_TxK = (k_K[None, :] >= t_T[:, None]) & (k_K[None, :] < t_T[:, None] + window)
  dots_TxBxK = jnp.einsum("tbh,kbh->tbk", features_TxBxH, keys_KxBxH, precision=jax.lax.Precision.HIGHEST)
  same_word_TxBxK = words_KxB.T[None, :, :] == targets_TxB[:, :, None]
  mixed_on_T = start + t_T > window  # the reference mixes at positions > window

  def one_setting(theta, lam):
    logits_TxBxK = jnp.where(in_window_TxK[:, None, :], theta * dots_TxBxK, -jnp.inf)
    attention_TxBxK = jax.nn.softmax(logits_TxBxK, axis=-1)
    p_cache_TxB = jnp.sum(jnp.where(same_word_TxBxK, attention_TxBxK, 0.0), axis=-1)
    # log((1 - lam) p_model + lam p_cache) without underflow; lam == 0 gives exactly -nll (log 0 = -inf).
    log_p_TxB = jnp.logaddexp(jnp.log1p(-lam) - nll_TxB, jnp.log(lam) + jnp.log(p_cache_TxB))
    return jnp.where(mixed_on_T[:, None], -log_p_TxB, nll_TxB)

  score_GxTxB = jax.vmap(one_setting)(theta_G, lam_G)
  # The cache after the window: the `window` entries ending at its last valid step.
  new_state = CacheState(jax.lax.dynamic_slice_in_dim(keys_KxBxH, length, window, axis=0),
                         jax.lax.dynamic_slice_in_dim(words_KxB, length, window, axis=0))
  return score_GxTxB, new_state
