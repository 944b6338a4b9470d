"""Prediction and sampling: next-word log-probabilities after a prefix, and a compiled sampling loop.

The state starts at zeros, like the reference; `generate` runs the prompt through the model, then
samples word by word from softmax(logits / temperature) inside one `lax.scan`, feeding one word per step:
the family's decoding carry (its state, or its key/value cache) holds what the word needs of the past.
`num_samples` sequences are drawn at once, as the columns of one batch: each from its own key
(`sample_keys`), all from the same prompt.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from lm_jax.models.interface import Carry, LanguageModel, Params


def _next_logits(model: LanguageModel, params: Params, tokens_TxN: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
  """Logits after the last of `tokens` [N, V] (one row per column), and the state after them."""
  output = model.features(params, tokens_TxN, carry)
  return model.logits(params, output.features_TxBxH[-1:])[0], output.carry


def _run_prefix(model: LanguageModel, params: Params, prefix_TxN: jax.Array, words_after: int = 0) -> tuple[jax.Array, Carry]:
  """Logits after the prefix [N, V], and a carry with room for `words_after` more words fed one at a time."""
  carry = model.init_decoding_carry(prefix_TxN.shape[1], prefix_TxN.shape[0] + words_after)
  return _next_logits(model, params, prefix_TxN, carry)


@functools.partial(jax.jit, static_argnums=0)
def predict(model: LanguageModel, params: Params, prefix_ids: jax.Array) -> jax.Array:
  """log p(next word | prefix), [V]."""
  logits_1xV, _ = _run_prefix(model, params, prefix_ids[:, None])
  return jax.nn.log_softmax(logits_1xV[0])


def sampling_logits(logits_V: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """logits / temperature, keeping only the k largest when top_k > 0 (exactly k: of tied logits, those
  lax.top_k lists first)."""
  logits_V = logits_V / temperature
  if top_k > 0:
    top_values_K, top_ids_K = jax.lax.top_k(logits_V, top_k)
    logits_V = jnp.full_like(logits_V, -jnp.inf).at[top_ids_K].set(top_values_K)
  return logits_V


def inverse_cdf(probs_V: jax.Array, u: jax.Array) -> jax.Array:
  """The word w with CDF(w - 1) <= u * total < CDF(w) for unnormalised probabilities [V] and u in [0, 1).

  Two levels, so that no pass runs a V-long prefix sum: the CDF of ~sqrt(V) block masses finds the block,
  then the CDF within that block the word. A zero-probability word (or block) repeats its predecessor's CDF
  value, so 'right' never lands on it, and u * total is kept below the total, so rounding cannot either.
  """
  vocab = probs_V.shape[0]
  block = math.isqrt(vocab - 1) + 1
  num_blocks = -(-vocab // block)
  probs_BxK = jnp.pad(probs_V, (0, num_blocks * block - vocab)).reshape(num_blocks, block)
  mass_B = probs_BxK.sum(axis=1)
  block_cdf_B = jnp.cumsum(mass_B)
  target = jnp.minimum(u * block_cdf_B[-1], jnp.nextafter(block_cdf_B[-1], 0))
  b = jnp.searchsorted(block_cdf_B, target, side="right")
  cdf_K = jnp.cumsum(probs_BxK[b])
  within = target - jnp.where(b > 0, block_cdf_B[b - 1], 0.0)
  k = jnp.searchsorted(cdf_K, jnp.minimum(within, jnp.nextafter(cdf_K[-1], 0)), side="right")
  return b * block + k


def sample_word(rng: jax.Array, logits_V: jax.Array) -> jax.Array:
  """One word drawn from softmax(logits) by inverting its CDF: a single uniform per word, where
  jax.random.categorical's Gumbel trick draws one per vocabulary entry (33k on WikiText-2)."""
  return inverse_cdf(jnp.exp(logits_V - jnp.max(logits_V)), jax.random.uniform(rng))


def sample_keys(rng: jax.Array, num_samples: int) -> jax.Array:
  """Sample k's key [num_samples]: `rng` itself for sample 0, fold_in(rng, k) for the others. So sample k
  is what a single-sample call with that key draws, sample 0 is the single-sample result for `rng`
  (the same words as before sampling was batched), and a call's samples begin any larger call's."""
  return jnp.concatenate([rng[None], jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(1, num_samples))])


@functools.partial(jax.jit, static_argnums=(0, 3, 5, 7))
def generate(model: LanguageModel, params: Params, rng: jax.Array, num_words: int, temperature: float,
             top_k: int = 0, prompt_ids: jax.Array | None = None, num_samples: int = 1) -> jax.Array:
  """`num_samples` sequences of `num_words` sampled word ids [num_samples, num_words]. Without a prompt
  each sequence's first input word is drawn uniformly, as in the reference."""
  first_keys_N, keys_N = jax.vmap(jax.random.split, out_axes=1)(sample_keys(rng, num_samples))
  if prompt_ids is None or prompt_ids.shape[0] == 0:
    prompt_PxN = jax.vmap(lambda key: jax.random.randint(key, (1,), 0, model.vocab_size), out_axes=1)(first_keys_N)
  else:
    prompt_PxN = jnp.broadcast_to(prompt_ids[:, None], (prompt_ids.shape[0], num_samples))
  logits_NxV, carry = _run_prefix(model, params, prompt_PxN, num_words)

  def sample_next(state, step_keys_N):
    logits_NxV, carry = state
    words_N = jax.vmap(lambda key, logits_V: sample_word(key, sampling_logits(logits_V, temperature, top_k)))(
        step_keys_N, logits_NxV)
    return _next_logits(model, params, words_N[None], carry), words_N

  step_keys_WxN = jax.vmap(lambda key: jax.random.split(key, num_words), out_axes=1)(keys_N)
  _, words_WxN = jax.lax.scan(sample_next, (logits_NxV, carry), step_keys_WxN)
  return words_WxN.T


def format_words(words: list[str], per_line: int = 20) -> str:
  """Words separated by spaces with a line break every `per_line` words, like the reference."""
  lines = [" ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]
  return "\n".join(lines) + "\n"
