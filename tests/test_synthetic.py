"""Tests for the synthetic corpus, checked against references computed here from the text."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from lm_jax.data import synthetic
from lm_jax.data.synthetic import SyntheticSplit, entropy_rate, generate_synthetic
from lm_jax.errors import UserError

SEED, VOCAB_SIZE, NUM_CLASSES = 0, 2000, 24
SIZES = {"train": 400_000, "valid": 40_000, "test": 40_000}


@pytest.fixture(scope="module")
def splits() -> dict[str, SyntheticSplit]:
  return generate_synthetic(SEED, VOCAB_SIZE, NUM_CLASSES)


@pytest.fixture(scope="module")
def source():
  return synthetic._build_source(SEED, VOCAB_SIZE, NUM_CLASSES)


@pytest.fixture(scope="module")
def token_nlls(splits, source) -> dict[str, np.ndarray]:
  return {name: _rescore(source, split.lines) for name, split in splits.items()}


def _tokens(lines: list[str]) -> list[str]:
  return [token for line in lines for token in line.split() + ["<eos>"]]


def _rescore(source, lines: list[str]) -> np.ndarray:
  """-log p of every token under the source tables, read back from the text alone."""
  end = source.end
  class_of = {"<eos>": end}
  word_prob = {"<eos>": 1.0}
  for c, (words, probs) in enumerate(zip(source.class_words, source.emission_probs)):
    for word_id, p in zip(words.tolist(), probs.tolist()):
      class_of[source.words[word_id]] = c
      word_prob[source.words[word_id]] = p
  nlls = []
  prev2 = prev1 = end
  for token in _tokens(lines):
    c = class_of[token]
    nlls.append(-math.log(source.next_class_probs[prev2, prev1, c] * word_prob[token]))
    prev2, prev1 = prev1, c
  return np.array(nlls)


def _dense_entropy_rate(source) -> float:
  """Entropy rate via a dense linear solve for the stationary contexts (not power iteration)."""
  probs = source.next_class_probs
  n = probs.shape[0]
  transition = np.zeros((n * n, n * n))
  for a in range(n):
    for b in range(n):
      transition[a * n + b, b * n:(b + 1) * n] = probs[a, b]
  system = transition.T - np.eye(n * n)
  system[-1] = 1.0
  rhs = np.zeros(n * n)
  rhs[-1] = 1.0
  context = np.linalg.solve(system, rhs).reshape(n, n)
  with np.errstate(divide="ignore", invalid="ignore"):
    class_entropy = -np.nansum(probs * np.log(probs), axis=-1)
  class_freq = context.sum(axis=0)
  word_entropy = [-(p * np.log(p)).sum() for p in source.emission_probs]
  return float((context * class_entropy).sum() + (class_freq[:source.end] * word_entropy).sum())


# --- Determinism ---------------------------------------------------------------


def test_same_seed_gives_identical_output_and_other_seeds_differ():
  small = dict(vocab_size=300, num_classes=8, train_tokens=5000, valid_tokens=800, test_tokens=800)
  first, again = generate_synthetic(seed=3, **small), generate_synthetic(seed=3, **small)
  other = generate_synthetic(seed=4, **small)
  for name in SIZES:
    assert first[name] == again[name]
    assert first[name].lines != other[name].lines
    assert first[name].cross_entropy != other[name].cross_entropy
  assert entropy_rate(3, 300, 8) == entropy_rate(3, 300, 8) != entropy_rate(4, 300, 8)


def test_each_split_is_its_own_stream():
  small = dict(vocab_size=300, num_classes=8, valid_tokens=800, test_tokens=800)
  short_train = generate_synthetic(seed=3, train_tokens=2000, **small)
  long_train = generate_synthetic(seed=3, train_tokens=6000, **small)
  assert short_train["valid"] == long_train["valid"]
  assert long_train["train"].lines[:len(short_train["train"].lines)] == short_train["train"].lines


# --- The floor -------------------------------------------------------------------


def test_floor_equals_text_rescored_under_the_source(splits, token_nlls):
  for name, split in splits.items():
    assert split.cross_entropy == pytest.approx(token_nlls[name].mean(), rel=1e-9)


def test_entropy_rate_matches_a_dense_stationary_solve(source):
  assert entropy_rate(SEED, VOCAB_SIZE, NUM_CLASSES) == pytest.approx(
      _dense_entropy_rate(source), rel=1e-9)


def test_train_floor_matches_entropy_rate_within_sampling_error(splits, token_nlls):
  # Tokens are correlated, so take the standard error from means of long blocks.
  nlls = token_nlls["train"]
  blocks = nlls[:len(nlls) // 100 * 100].reshape(100, -1).mean(axis=1)
  standard_error = blocks.std(ddof=1) / math.sqrt(len(blocks))
  rate = entropy_rate(SEED, VOCAB_SIZE, NUM_CLASSES)
  assert standard_error < 0.005 * rate  # the check below is meaningful
  assert abs(splits["train"].cross_entropy - rate) < 4 * standard_error


def test_sampled_class_transitions_follow_the_table(splits, source):
  word_class = {source.words[w]: c for c, words in enumerate(source.class_words) for w in words}
  end = source.end
  counts = collections.defaultdict(collections.Counter)
  prev2 = prev1 = end
  for token in _tokens(splits["train"].lines):
    c = word_class.get(token, end)
    counts[prev2, prev1][c] += 1
    prev2, prev1 = prev1, c
  for context, next_counts in sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))[:10]:
    total = sum(next_counts.values())
    expected = source.next_class_probs[context]
    assert set(next_counts) <= set(np.flatnonzero(expected))
    for c, p in enumerate(expected):
      if p > 0:
        binomial_sd = math.sqrt(total * p * (1 - p))
        assert abs(next_counts[c] - total * p) < 5 * binomial_sd + 1


def test_words_within_a_class_are_zipfian(splits, source):
  counts = collections.Counter(_tokens(splits["train"].lines))
  largest = max(range(source.num_classes), key=lambda c: len(source.class_words[c]))
  ranked = [counts[source.words[w]] for w in source.class_words[largest][:4]]
  # p(rank r) ∝ 1 / r: ranks 2..4 relative to rank 1 should be about 1/2, 1/3, 1/4,
  # within 4 standard errors of a ratio of Poisson-like counts.
  for rank, count in enumerate(ranked[1:], start=2):
    ratio = count / ranked[0]
    standard_error = ratio * math.sqrt(1 / count + 1 / ranked[0])
    assert abs(ratio - 1 / rank) < 4 * standard_error


# --- Text shape ------------------------------------------------------------------


def test_lines_are_nonempty_sentences_of_known_pseudo_words(splits, source):
  vocabulary = set(source.words)
  assert len(vocabulary) == VOCAB_SIZE
  assert all(w.isascii() and w.isalpha() and w.islower() for w in vocabulary)
  for split in splits.values():
    for line in split.lines:
      words = line.split(" ")
      assert words and all(words)  # non-empty, single spaces, no stray whitespace
      assert set(words) <= vocabulary


def test_no_reserved_tokens_in_text(splits):
  for split in splits.values():
    text = "\n".join(split.lines)
    assert "<eos>" not in text and "<unk>" not in text


def test_token_counts_stop_at_first_sentence_end_after_request(splits):
  for name, split in splits.items():
    lengths = [len(line.split()) + 1 for line in split.lines]
    total = sum(lengths)
    assert SIZES[name] <= total < SIZES[name] + lengths[-1]
    assert 10 <= np.mean(lengths) - 1 <= 25


def test_splits_share_one_vocabulary(splits, source):
  vocabulary = set(source.words)
  seen = {name: set(_tokens(split.lines)) - {"<eos>"} for name, split in splits.items()}
  assert seen["valid"] | seen["test"] <= vocabulary
  # The frequent part of the vocabulary shows up in every split.
  assert len(seen["valid"] & seen["train"]) > 0.5 * VOCAB_SIZE


# --- Learnable structure -----------------------------------------------------------


def _unigram_perplexity(train: list[str], valid: list[str]) -> float:
  counts = collections.Counter(train)
  vocab = set(train) | set(valid)
  total = len(train) + len(vocab)
  return math.exp(-np.mean([math.log((counts[w] + 1) / total) for w in valid]))


def _bigram_perplexity(train: list[str], valid: list[str]) -> float:
  """Witten-Bell interpolated bigram over add-one unigrams; <eos> starts each history."""
  unigram = collections.Counter(train)
  vocab_size = len(set(train) | set(valid))
  follow = collections.defaultdict(collections.Counter)
  for prev, word in zip(["<eos>"] + train, train):
    follow[prev][word] += 1
  nll = 0.0
  for prev, word in zip(["<eos>"] + valid, valid):
    p_unigram = (unigram[word] + 1) / (len(train) + vocab_size)
    after = follow[prev]
    seen, types = sum(after.values()), len(after)
    if seen == 0:
      p = p_unigram
    else:
      p = (after[word] + types * p_unigram) / (seen + types)
    nll -= math.log(p)
  return math.exp(nll / len(valid))


def test_source_has_structure_beyond_unigrams(splits):
  train, valid = _tokens(splits["train"].lines), _tokens(splits["valid"].lines)
  floor = math.exp(splits["valid"].cross_entropy)
  unigram = _unigram_perplexity(train, valid)
  bigram = _bigram_perplexity(train, valid)
  assert unigram > 3 * floor
  assert floor < bigram < unigram


# --- Arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, named", [
    (dict(vocab_size=10, num_classes=24), "vocab_size"),
    (dict(num_classes=1), "num_classes"),
    (dict(train_tokens=0), "train_tokens"),
    (dict(valid_tokens=-5), "valid_tokens"),
    (dict(test_tokens=0), "test_tokens"),
    (dict(seed=-1), "seed"),
])
def test_bad_arguments_raise_user_error(kwargs, named):
  with pytest.raises(UserError, match=named):
    generate_synthetic(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(vocab_size=10, num_classes=24), dict(num_classes=1)])
def test_entropy_rate_checks_arguments(kwargs):
  with pytest.raises(UserError):
    entropy_rate(**kwargs)


def test_smallest_source_works():
  splits = generate_synthetic(seed=1, vocab_size=2, num_classes=2, train_tokens=3000,
                              valid_tokens=10, test_tokens=10)
  assert all(split.lines and all(split.lines) for split in splits.values())
  assert splits["train"].cross_entropy == pytest.approx(entropy_rate(1, 2, 2), rel=0.1)
