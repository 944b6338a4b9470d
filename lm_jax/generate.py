"""Prediction and sampling: next-word log-probabilities after a prefix, and a compiled sampling loop.

The state starts at zeros, like the reference; `generate` runs the prompt through the model, then
samples word by word from softmax(logits / temperature) inside one `lax.scan`, feeding one word per step:
the family's decoding carry (its state, or its key/value cache) holds what the word needs of the past.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lm_jax.models.interface import Carry, LanguageModel, Params


def _next_logits(model: LanguageModel, params: Params, tokens_Tx1: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
  """Logits after the last of `tokens` [V], and the state after them (batch of one)."""
  output = model.features(params, tokens_Tx1, carry)
  return model.logits(params, output.features_TxBxH[-1:])[0, 0], output.carry


def _run_prefix(model: LanguageModel, params: Params, prefix_ids: jax.Array, words_after: int = 0) -> tuple[jax.Array, Carry]:
  """Logits after the prefix, and a carry with room for `words_after` more words fed one at a time."""
  carry = model.init_decoding_carry(1, prefix_ids.shape[0] + words_after)
  return _next_logits(model, params, prefix_ids[:, None], carry)


@functools.partial(jax.jit, static_argnums=0)
def predict(model: LanguageModel, params: Params, prefix_ids: jax.Array) -> jax.Array:
  """log p(next word | prefix), [V]."""
  logits_V, _ = _run_prefix(model, params, prefix_ids)
  return jax.nn.log_softmax(logits_V)


def sampling_logits(logits_V: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """logits / temperature, keeping only the k largest when top_k > 0 (exactly k: of tied logits, those
  lax.top_k lists first)."""
  logits_V = logits_V / temperature
  if top_k > 0:
    top_values_K, top_ids_K = jax.lax.top_k(logits_V, top_k)
    logits_V = jnp.full_like(logits_V, -jnp.inf).at[top_ids_K].set(top_values_K)
  return logits_V


def sample_word(rng: jax.Array, logits_V: jax.Array) -> jax.Array:
  """One word drawn from softmax(logits) by inverting its CDF: a single uniform per word, where
  jax.random.categorical's Gumbel trick draws one per vocabulary entry (33k on WikiText-2)."""
  cdf_V = jnp.cumsum(jax.nn.softmax(logits_V))
  # A zero-probability word repeats its predecessor's CDF value, so 'right' never lands on it.
  word = jnp.searchsorted(cdf_V, jax.random.uniform(rng) * cdf_V[-1], side="right")
  return jnp.minimum(word, logits_V.shape[0] - 1)


@functools.partial(jax.jit, static_argnums=(0, 3, 5))
def generate(model: LanguageModel, params: Params, rng: jax.Array, num_words: int, temperature: float,
             top_k: int = 0, prompt_ids: jax.Array | None = None) -> jax.Array:
  """`num_words` sampled word ids [num_words]. Without a prompt the first input word is drawn
  uniformly, as in the reference."""
  first_rng, rng = jax.random.split(rng)
  if prompt_ids is None or prompt_ids.shape[0] == 0:
    prompt_ids = jax.random.randint(first_rng, (1,), 0, model.vocab_size)
  logits_V, carry = _run_prefix(model, params, prompt_ids, num_words)

  def sample_next(state, step_rng):
    logits_V, carry = state
    word = sample_word(step_rng, sampling_logits(logits_V, temperature, top_k))
    return _next_logits(model, params, word[None, None], carry), word

  _, words = jax.lax.scan(sample_next, (logits_V, carry), jax.random.split(rng, num_words))
  return words


def format_words(words: list[str], per_line: int = 20) -> str:
  """Words separated by spaces with a line break every `per_line` words, like the reference."""
  lines = [" ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]
  return "\n".join(lines) + "\n"
