"""The decoder and its softmax cross-entropy, fused: the hot spot at large vocabularies.

At WikiText-2's 33,278 words the [T*B, V] logits dominate a step. Plain autodiff of
logsumexp(h W^T + b) - logit[target] makes several passes over them (max, exp, sum, a second exp or
a stored softmax, a dense one-hot scatter for the target gather, the bias reduction). Here the forward
keeps exp(logits - max) once, and the backward forms d logits = exp(...) * g / sum - onehot * g
from it directly (no second exp, no dense one-hot), then the three gradients from that one array.
Exact: the same float32 function as the unfused formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def decoder_nll(h_NxH: jax.Array, w_VxH: jax.Array, b_V: jax.Array, targets_N: jax.Array) -> jax.Array:
  """-log softmax(h W^T + b)[target] per row, [N]."""
  return _forward(h_NxH, w_VxH, b_V, targets_N)[0]


def _forward(h_NxH, w_VxH, b_V, targets_N):
  logits_NxV = h_NxH @ w_VxH.T + b_V
  max_N = jnp.max(logits_NxV, axis=-1)
  exp_NxV = jnp.exp(logits_NxV - max_N[:, None])
  sum_N = jnp.sum(exp_NxV, axis=-1)
  target_logit_N = jnp.take_along_axis(logits_NxV, targets_N[:, None], axis=-1)[:, 0]
  nll_N = max_N + jnp.log(sum_N) - target_logit_N
  return nll_N, (h_NxH, w_VxH, exp_NxV, sum_N, targets_N)


def _backward(residuals, g_N):
  h_NxH, w_VxH, exp_NxV, sum_N, targets_N = residuals
  rows_N = jnp.arange(targets_N.shape[0])
  dlogits_NxV = (exp_NxV * (g_N / sum_N)[:, None]).at[rows_N, targets_N].add(-g_N)
  return dlogits_NxV @ w_VxH, dlogits_NxV.T @ h_NxH, jnp.sum(dlogits_NxV, axis=0), None


decoder_nll.defvjp(_forward, _backward)
