"""The transformer family's positions (config.model.positions): the reference's sinusoids added to the
embedding ("absolute", `sinusoids`), or Transformer-XL's relative attention ("relative"; Dai et al. 2019,
kimiyoung/transformer-xl pytorch/mem_transformer.py, RelPartialLearnableMultiHeadAttn).

Relative: nothing is added to the embedding. The attention score of query i (at position p_i) on key j (at
p_j <= p_i) is, per head,

  score(i, j) = [ (q_i + u) . k_j  +  (q_i + v) . (R[p_i - p_j] W_r) ] / sqrt(D)

with R[d] the sinusoid of the distance d (`sinusoids` at position d), W_r [E, E] a per-layer projection
without bias (Transformer-XL's r_net), and u, v [heads, D] the content and position biases every layer shares
(its r_w_bias and r_r_bias). Transformer-XL concatenates the sin and cos halves where `sinusoids`
interleaves them: a fixed permutation of R's features, which W_r absorbs.

Scores see positions only through p_i - p_j, so a carried memory's keys and values mean the same at every
point of an epoch, and the key/value cache serves generation exactly. The position term is computed for the
S distances S-1..0 per query (S keys: the cache's C, then the window's T) and moved into place by
`relative_shift` (Transformer-XL's _rel_shift): a pad and two reshapes, not a gather.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

POSITIONS = ("absolute", "relative")
_RELATIVE_INIT_STREAM = 1  # folded into the model's seed: the absolute model's parameters keep their values
_BIAS_INIT_STD = 0.02  # Transformer-XL's init_std, for r_w_bias and r_r_bias

Einsum = Callable[[str, jax.Array, jax.Array], jax.Array]


def sinusoids(positions: ArrayLike, emsize: int, xp: ModuleType = jnp) -> ArrayLike:
  """The reference's PositionalEncoding at `positions` [...] -> [..., E]: even features sin(p * w_i), odd
  cos(p * w_i), w_i = exp(-2i log(10000) / E), in float32 as PyTorch computes its table. `xp` is numpy for
  positions known when tracing (a constant, the same bits in every program and in the exported table:
  XLA's sin differs in the last bit between a folded constant and a computed one) or jax.numpy."""
  exponents_half = np.arange(0, emsize, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / emsize)
  # exp rounded once from float64: PyTorch's rates exactly (numpy's float32 exp is an ulp off for some,
  # which shifts the angle at position 5000 by 1e-4).
  rates_half = np.exp(exponents_half.astype(np.float64)).astype(np.float32)
  angles = xp.asarray(positions).astype(np.float32)[..., None] * rates_half
  if xp is np:  # sin and cos of the float32 angles rounded once, as close as XLA's; numpy's float32 sin is coarser
    angles = angles.astype(np.float64)
  pe = xp.stack([xp.sin(angles), xp.cos(angles)], axis=-1).astype(np.float32)
  return pe.reshape(*angles.shape[:-1], emsize)


def distance_table(num_keys: int, emsize: int) -> ArrayLike:
  """R at the distances S-1, ..., 1, 0 [S, E]: a constant when S is known while tracing, computed for a
  symbolic S (lm-jax-export's steps-polymorphic programs)."""
  if isinstance(num_keys, int):
    return sinusoids(np.arange(num_keys - 1, -1, -1), emsize, np)
  return sinusoids(num_keys - 1 - jnp.arange(num_keys), emsize)


def relative_init_params(seed: int, nlayers: int, emsize: int, nhead: int) -> dict[str, jax.Array]:
  """relative_u, relative_v ~ N(0, 0.02) as Transformer-XL's; each layer_k_relative_proj xavier-uniform as the
  family's other matrices."""
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), _RELATIVE_INIT_STREAM), nlayers + 2)
  bound = math.sqrt(6.0 / (2 * emsize))
  params = {name: _BIAS_INIT_STD * jax.random.normal(key, (nhead, emsize // nhead))
            for name, key in zip(("relative_u", "relative_v"), keys)}
  params.update({f"layer_{k}_relative_proj": jax.random.uniform(keys[2 + k], (emsize, emsize), jnp.float32,
                                                                  -bound, bound) for k in range(nlayers)})
  return params


def relative_shift(x_BxNxTxS: jax.Array) -> jax.Array:
  """Column c of each row holds distance S-1-c (`distance_table`); the output's column s holds key s's distance
  from query t, the T queries being the last T of the S keys' positions: out[.., t, s] = x[.., t, s + T-1-t].
  Exact wherever s <= t + S - T, every key a causal query sees; elsewhere it holds other entries, masked."""
  *lead, steps, keys = x_BxNxTxS.shape
  padded = jnp.pad(x_BxNxTxS, [(0, 0)] * len(lead) + [(0, 0), (1, 0)])  # a zero column in front: [.., T, S+1]
  # Dropping the first T of the T(S+1) entries moves row t left by T-1-t: entry t S + s of the rest is entry
  # t (S+1) + (T-t+s) of `padded`, its row t while T-t+s <= S. As [S+1, T] that is dropping its first row.
  return padded.reshape(*lead, keys + 1, steps)[..., 1:, :].reshape(*lead, steps, keys)


def relative_scores(q_TxBxNxD: jax.Array, keys_BxSxNxD: jax.Array, position_keys_SxNxD: jax.Array, u_NxD: jax.Array,
                    v_NxD: jax.Array, einsum: Einsum) -> jax.Array:
  """(q + u) . k + (q + v) . r over the S keys, before the 1/sqrt(D) scale: [B, N, T, S]. `position_keys_SxNxD`
  is `distance_table` @ W_r, split into heads."""
  content_BxNxTxS = einsum("tbnd,bsnd->bnts", q_TxBxNxD + u_NxD, keys_BxSxNxD)
  position_BxNxTxS = einsum("tbnd,snd->bnts", q_TxBxNxD + v_NxD, position_keys_SxNxD)
  return content_BxNxTxS + relative_shift(position_BxNxTxS)
