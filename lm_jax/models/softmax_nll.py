"""The decoder and its softmax cross-entropy, fused: the hot spot at large vocabularies.

At WikiText-2's 33,278 words the [N, V] logits (N = T*B) dominate a step, and on XLA:CPU the passes
over them cost as much as the matmuls. Plain autodiff of logsumexp(h W^T + b) - logit[target] makes
many: max, exp, sum, a second exp or a stored softmax, a dense one-hot for the target gather, the
d logits array, and a column reduction for the bias gradient (single-threaded there: ~160 ms, more
than a decoder matmul).

Here the forward makes four passes (the matmul with the bias folded in, the max, the exp, and a
matrix-vector product for the row sums) and keeps only e = exp(logits - max) and its row sums s.
With d logits = diag(g/s) e - onehot(target) diag(g), every gradient splits into a product with e
and a sparse target term:

  dh = diag(g/s) (e W) - g * W[target]
  dW = e^T (diag(g/s) h) - scatter_add(target, g * h)
  db = (g/s)^T e - scatter_add(target, g)

so the backward reads e in two matmuls and one matrix-vector product, and never forms d logits.
Exact: the same float32 function and gradient as `plain_decoder_nll`, the readable definition, up to
rounding (tests/test_steps.py checks both against float64).

With matmul_dtype "bfloat16" (precision.py) the matmuls, forward and backward, take bfloat16 inputs
and the bias is added in float32 after the forward one (folded in, it would be rounded); the target
terms use the same rounded h and W rows; max, exp, sums, log and the loss stay float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lm_jax.models.precision import einsum, matmul, rounded


def plain_decoder_nll(h_NxH: jax.Array, w_VxH: jax.Array, b_V: jax.Array, targets_N: jax.Array) -> jax.Array:
  """The definition: -log softmax(h W^T + b)[target] per row, [N], by plain autodiff-able operations."""
  log_probs_NxV = jax.nn.log_softmax(h_NxH @ w_VxH.T + b_V, axis=-1)
  return -jnp.take_along_axis(log_probs_NxV, targets_N[:, None], axis=-1)[:, 0]


def decoder_nll(h_NxH: jax.Array, w_VxH: jax.Array, b_V: jax.Array, targets_N: jax.Array,
                matmul_dtype: str = "float32") -> jax.Array:
  """-log softmax(h W^T + b)[target] per row, [N]."""
  return _decoder_nll(matmul_dtype, h_NxH, w_VxH, b_V, targets_N)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _decoder_nll(dtype, h_NxH, w_VxH, b_V, targets_N):
  return _forward(dtype, h_NxH, w_VxH, b_V, targets_N)[0]


def _logits(dtype, h_NxH, w_VxH, b_V):
  if dtype != "float32":
    return einsum("nh,vh->nv", h_NxH, w_VxH, dtype) + b_V
  # The bias rides in the matmul as one more input column ([h, 1] [W, b]^T): XLA:CPU would otherwise
  # add it in a pass of its own over the logits, and copying W is far cheaper than that pass.
  ones_Nx1 = jnp.ones((h_NxH.shape[0], 1), h_NxH.dtype)
  return jnp.concatenate([h_NxH, ones_Nx1], axis=1) @ jnp.concatenate([w_VxH, b_V[:, None]], axis=1).T


def _forward(dtype, h_NxH, w_VxH, b_V, targets_N):
  logits_NxV = _logits(dtype, h_NxH, w_VxH, b_V)
  max_N = jnp.max(logits_NxV, axis=-1)
  exp_NxV = jnp.exp(logits_NxV - max_N[:, None])
  sum_N = exp_NxV @ jnp.ones(exp_NxV.shape[1], exp_NxV.dtype)  # a matrix-vector product beats XLA:CPU's row sum
  # The target logits from their N weight rows, not a gather from the [N, V] logits.
  target_logit_N = jnp.sum(rounded(h_NxH, dtype) * rounded(w_VxH[targets_N], dtype), axis=-1) + b_V[targets_N]
  nll_N = max_N + jnp.log(sum_N) - target_logit_N
  return nll_N, (h_NxH, w_VxH, exp_NxV, sum_N, targets_N)


def _backward(dtype, residuals, g_N):
  h_NxH, w_VxH, exp_NxV, sum_N, targets_N = residuals
  scale_N = g_N / sum_N
  dh_NxH = scale_N[:, None] * matmul(exp_NxV, w_VxH, dtype) - g_N[:, None] * rounded(w_VxH[targets_N], dtype)
  dw_VxH = matmul(exp_NxV.T, scale_N[:, None] * h_NxH, dtype).at[targets_N].add(-g_N[:, None] * rounded(h_NxH, dtype))
  db_V = (scale_N @ exp_NxV).at[targets_N].add(-g_N)
  return dh_NxH, dw_VxH, db_V, None


_decoder_nll.defvjp(_forward, _backward)
