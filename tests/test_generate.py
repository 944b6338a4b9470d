"""Batched sampling: sample k of a call is the single-sample call with sample k's key, for both families
(the RNN's state and the transformer's key/value cache carried with a batch of samples); the two-level
inverse CDF against NumPy's one-level one in float64. The distribution of the batched draws: tests/test_training.py; the CLI's blocks: tests/test_cli.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.generate import generate, inverse_cdf, sample_keys
from lm_jax.models.rnn_model import RNNModel
from lm_jax.models.transformer import TransformerModel

V, WORDS, N = 40, 20, 5

MODELS = {
    "gru": lambda: RNNModel(vocab_size=V, cell="gru", emsize=16, nhid=16, nlayers=2, dropout=0.0, init_range=1.0),
    "lstm": lambda: RNNModel(vocab_size=V, emsize=16, nhid=16, nlayers=1, dropout=0.0, init_range=1.0),
    "transformer": lambda: TransformerModel(vocab_size=V, emsize=16, nhid=24, nlayers=2, memory=3),
}


@pytest.mark.parametrize("family, prompt, top_k", [("gru", None, 0), ("lstm", [4, 7], 5), ("transformer", None, 0),
                                                   ("transformer", [3, 1, 4], 5)])
def test_each_sample_is_the_single_sample_call_with_its_key(family, prompt, top_k):
  model = MODELS[family]()
  params = model.init_params(2)
  rng = jax.random.PRNGKey(9)
  prompt_ids = None if prompt is None else jnp.asarray(prompt, jnp.int32)
  words_NxW = np.asarray(generate(model, params, rng, WORDS, 1.0, top_k, prompt_ids, num_samples=N))
  assert words_NxW.shape == (N, WORDS)
  keys_N = sample_keys(rng, N)
  assert np.array_equal(keys_N[0], rng)  # sample 0 is the single-sample result for rng itself
  for k in range(N):
    single_1xW = np.asarray(generate(model, params, keys_N[k], WORDS, 1.0, top_k, prompt_ids))
    assert np.array_equal(words_NxW[k], single_1xW[0]), k
  assert len({tuple(words) for words in words_NxW}) == N  # distinct keys, distinct samples


def test_a_calls_samples_begin_any_larger_calls():
  model = MODELS["lstm"]()
  params = model.init_params(0)
  three = generate(model, params, jax.random.PRNGKey(1), WORDS, 1.0, 0, None, num_samples=3)
  eight = generate(model, params, jax.random.PRNGKey(1), WORDS, 1.0, 0, None, num_samples=8)
  assert np.array_equal(three, eight[:3])
  assert len({tuple(np.asarray(key)) for key in sample_keys(jax.random.PRNGKey(1), 8)}) == 8


@pytest.mark.parametrize("vocab", [1, 2, 7, 16, 40, 1001])
def test_two_level_inverse_cdf_is_the_flat_one_and_never_picks_a_zero_probability_word(vocab):
  """Integer weights summing to a power of two, so that every CDF value and u * total are exact in float32:
  each word's own CDF boundaries and the points between them give NumPy's flat searchsorted answer.
  Zeros lead, trail and fill whole blocks; u = 1 (beyond any uniform) still lands on a word with mass."""
  rng = np.random.default_rng(vocab)
  weights_V = rng.integers(0, 4, vocab).astype(np.float64)
  weights_V[rng.random(vocab) < 0.3] = 0
  weights_V[:vocab // 3] = 0
  weights_V[vocab - vocab // 5:] = 0
  weights_V[vocab // 2] = 1
  total = 2 ** int(np.ceil(np.log2(weights_V.sum() + 1)))
  weights_V[vocab // 2] += total - weights_V.sum()
  cdf_V = np.cumsum(weights_V)
  u_U = np.concatenate([cdf_V / total, (cdf_V - 0.5) / total, [0.0, 1 - 2.0 ** -24]])
  u_U = u_U[(u_U >= 0) & (u_U < 1)]
  expected_U = np.searchsorted(cdf_V, u_U * total, side="right")
  got_U = np.asarray(jax.jit(jax.vmap(inverse_cdf, (None, 0)))(jnp.asarray(weights_V, jnp.float32),
                                                                  jnp.asarray(u_U, jnp.float32)))
  np.testing.assert_array_equal(got_U, expected_U)
  assert int(inverse_cdf(jnp.asarray(weights_V, jnp.float32), jnp.float32(1.0))) == np.flatnonzero(weights_V)[-1]
