"""A synthetic "toy English" corpus drawn from a source whose probabilities are known.

The source is a second-order Markov chain over word classes ("parts of speech")
with Zipfian word emission inside each class. Every word belongs to exactly one
class, so the class history is a function of the word history and the true
probability of the next token given everything before it is

    p(c_t | c_{t-2}, c_{t-1}) * p(w_t | c_t).

A special END class (emission probability 1) ends each sentence; it is the
`<eos>` the tokenizer appends to every line. Summing -log of that probability
while sampling gives each split's exact cross-entropy under the source: the
floor no model can beat in expectation. The chain is sparse and low-rank, so a
small LSTM can learn it, while its unigram perplexity sits far above the floor.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools

import numpy as np

from lm_jax.data.markov import stationary_contexts
from lm_jax.data.spelling import spell_words
from lm_jax.errors import UserError

_SPLIT_NAMES = ("train", "valid", "test")
_TABLES_STREAM = len(_SPLIT_NAMES)  # rng stream ids 0..2 are the splits

_ZIPF_EXPONENT = 1.0
_CLASS_SIZE_CONCENTRATION = 0.8  # < 1: a few big open classes, many small closed ones
_MIN_NEXT_CLASSES, _MAX_NEXT_CLASSES = 2, 5
_PREV2_ROLES = 3  # distinct ways c_{t-2} can shape the next class, besides END
_SUCCESSOR_POOL = 8  # classes that may follow a given class, whatever came before it
_MEAN_SENTENCE_WORDS = 15.0
_MAX_END_PROB = 0.9
_CALIBRATION_STEPS = 40  # bisection halvings of the END scale's log range



@dataclasses.dataclass(frozen=True)
class SyntheticSplit:
  lines: list[str]  # one sentence per line, words separated by " "
  cross_entropy: float  # floor: nats per token, tokens = words + one <eos> per line


@dataclasses.dataclass(frozen=True)
class _Source:
  """The source's tables. Class index `num_classes` is END."""
  num_classes: int
  next_class_probs: np.ndarray  # [C+1, C+1, C+1]: P(c_t | c_{t-2}, c_{t-1})
  context_probs: np.ndarray  # [C+1, C+1]: stationary P(c_{t-2}, c_{t-1})
  class_words: list[np.ndarray]  # per class: word ids, most probable first
  emission_probs: list[np.ndarray]  # per class: P(word | class), aligned with class_words
  words: list[str]  # word id -> spelling

  @property
  def end(self) -> int:
    return self.num_classes


def generate_synthetic(seed: int = 0, vocab_size: int = 2000, num_classes: int = 24,
                       train_tokens: int = 400_000, valid_tokens: int = 40_000,
                       test_tokens: int = 40_000) -> dict[str, SyntheticSplit]:
  """Returns {'train': ..., 'valid': ..., 'test': ...}; same seed -> identical output.

  Token counts are approximate: each split stops at the first sentence end at or
  after its requested count. Each split is its own stream from the same source:
  changing one split's size leaves the others unchanged and only extends or
  truncates that split.
  """
  _check_source_args(seed, vocab_size, num_classes)
  sizes = {"train": train_tokens, "valid": valid_tokens, "test": test_tokens}
  for name, size in sizes.items():
    if size <= 0:
      raise UserError(f"{name}_tokens must be positive (got {size}); pass a token count >= 1.")
  source = _build_source(seed, vocab_size, num_classes)
  return {name: _sample_split(source, seed, stream, sizes[name])
          for stream, name in enumerate(_SPLIT_NAMES)}


def entropy_rate(seed: int = 0, vocab_size: int = 2000, num_classes: int = 24) -> float:
  """The source's exact entropy rate in nats/token, computed analytically from its tables.

  Stationary distribution of the second-order class chain over (c_{t-2}, c_{t-1})
  contexts: sum_ctx pi(ctx) H(next class | ctx) + sum_c pi(c) H(word | c).
  Independent of sampling.
  """
  _check_source_args(seed, vocab_size, num_classes)
  source = _build_source(seed, vocab_size, num_classes)
  next_class_entropy = _entropy(source.next_class_probs, axis=-1)
  class_probs = source.context_probs.sum(axis=0)  # P(c_{t-1}) = P(c_t) when stationary
  word_entropy = np.array([_entropy(p, axis=-1) for p in source.emission_probs])
  return float(np.sum(source.context_probs * next_class_entropy)
               + np.sum(class_probs[:source.end] * word_entropy))


def _check_source_args(seed: int, vocab_size: int, num_classes: int) -> None:
  if seed < 0:
    raise UserError(f"seed must be non-negative (got {seed}); pass a seed >= 0.")
  if num_classes < 2:
    raise UserError(f"num_classes must be at least 2 (got {num_classes}); pass num_classes >= 2.")
  if vocab_size < num_classes:
    raise UserError(f"vocab_size ({vocab_size}) is smaller than num_classes ({num_classes}); "
                    "every class needs a word, so pass vocab_size >= num_classes.")


def _rng(seed: int, *stream: int) -> np.random.Generator:
  # Independent child streams, so each split and the tables never share draws.
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


def _entropy(probs: np.ndarray, axis: int) -> np.ndarray:
  safe = np.where(probs > 0, probs, 1.0)  # 0 log 0 = 0
  return -np.sum(probs * np.log(safe), axis=axis)


# --- Building the source ------------------------------------------------------


def _build_source(seed: int, vocab_size: int, num_classes: int) -> _Source:
  """The source's tables; a pure function of its arguments."""
  rng = _rng(seed, _TABLES_STREAM)
  sizes = _class_sizes(rng, vocab_size, num_classes)
  # A random permutation split into classes: membership and within-class Zipf ranks.
  shuffled = rng.permutation(vocab_size)
  class_words = np.split(shuffled, np.cumsum(sizes)[:-1])
  emission_probs = [_zipf(len(words)) for words in class_words]
  # c_{t-2} matters only through a few coarse roles (END is its own), which
  # keeps the second-order table low-rank: far fewer distinct contexts to learn.
  roles = np.append(rng.integers(_PREV2_ROLES, size=num_classes), _PREV2_ROLES)
  class_probs = _class_transitions(rng, num_classes)[roles]
  end_weights = _end_weights(rng, num_classes)[roles]
  next_class_probs, context_probs = _calibrate_sentence_length(class_probs, end_weights)

  class_freq = context_probs.sum(axis=0)[:num_classes]
  word_freq = np.zeros(vocab_size)
  for c, (words, probs) in enumerate(zip(class_words, emission_probs)):
    word_freq[words] = class_freq[c] * probs
  return _Source(num_classes=num_classes, next_class_probs=next_class_probs,
                 context_probs=context_probs, class_words=class_words,
                 emission_probs=emission_probs, words=spell_words(rng, word_freq))


def _class_sizes(rng: np.random.Generator, vocab_size: int, num_classes: int) -> np.ndarray:
  """Dirichlet shares of the vocabulary, every class at least one word."""
  shares = rng.dirichlet(np.full(num_classes, _CLASS_SIZE_CONCENTRATION))
  extra = shares * (vocab_size - num_classes)
  sizes = 1 + np.floor(extra).astype(np.int64)
  leftover = vocab_size - int(sizes.sum())
  sizes[np.argsort(np.floor(extra) - extra, kind="stable")[:leftover]] += 1
  return sizes


def _zipf(size: int) -> np.ndarray:
  weights = 1.0 / np.arange(1, size + 1) ** _ZIPF_EXPONENT
  return weights / weights.sum()


def _class_transitions(rng: np.random.Generator, num_classes: int) -> np.ndarray:
  """[role of c_{t-2}, c_{t-1}, c_t]: P(c_t | context, c_t is not END).

  Each context allows a few classes drawn from a small pool of successors of
  c_{t-1}, so the previous class alone already says a lot (as in language) and
  the earlier one sharpens it. Every sentence-start context (c_{t-1} = END)
  allows one shared opening class, so all contexts reach one common state and
  the chain has a single stationary distribution (sampling averages converge to
  `entropy_rate`).
  """
  end = num_classes
  pool_size = min(_SUCCESSOR_POOL, num_classes)
  pools = [rng.choice(num_classes, size=pool_size, replace=False) for _ in range(num_classes + 1)]
  opener = pools[end][0]
  probs = np.zeros((_PREV2_ROLES + 1, num_classes + 1, num_classes + 1))
  for role, prev1 in itertools.product(range(_PREV2_ROLES + 1), range(num_classes + 1)):
    count = min(int(rng.integers(_MIN_NEXT_CLASSES, _MAX_NEXT_CLASSES + 1)), pool_size)
    allowed = rng.choice(pools[prev1], size=count, replace=False)
    if prev1 == end and opener not in allowed:
      allowed[0] = opener
    probs[role, prev1, allowed] = rng.dirichlet(np.ones(count))
  return probs


def _end_weights(rng: np.random.Generator, num_classes: int) -> np.ndarray:
  """[role of c_{t-2}, c_{t-1}]: relative chance of END; some classes end sentences far more often.

  Zero after END (no empty sentences), positive everywhere else so every
  sentence ends.
  """
  end = num_classes
  class_affinity = 0.05 + rng.gamma(0.5, size=num_classes + 1)
  context_noise = rng.uniform(0.5, 1.5, size=(_PREV2_ROLES + 1, num_classes + 1))
  weights = class_affinity[None, :] * context_noise
  weights[:, end] = 0.0
  return weights


def _calibrate_sentence_length(class_probs: np.ndarray, end_weights: np.ndarray,
                               ) -> tuple[np.ndarray, np.ndarray]:
  """Scales END's probability so sentences average _MEAN_SENTENCE_WORDS words.

  Returns (next_class_probs, stationary context probs). Mean words per sentence
  is 1 / P(token is END) - 1, and it falls as the scale rises, so bisect.
  """
  low, high = np.log(1e-4), np.log(1e4)
  for _ in range(_CALIBRATION_STEPS):
    mid = (low + high) / 2
    next_class_probs = _with_end(class_probs, end_weights, np.exp(mid))
    context_probs = stationary_contexts(next_class_probs)
    end_freq = context_probs[:, -1].sum()
    if 1.0 / end_freq - 1.0 > _MEAN_SENTENCE_WORDS:
      low = mid
    else:
      high = mid
  return next_class_probs, context_probs


def _with_end(class_probs: np.ndarray, end_weights: np.ndarray, scale: float) -> np.ndarray:
  end_prob = np.minimum(scale * end_weights, _MAX_END_PROB)
  probs = class_probs * (1.0 - end_prob)[..., None]
  probs[..., -1] = end_prob
  return probs


# --- Sampling ---------------------------------------------------------------


def _sample_split(source: _Source, seed: int, stream: int, min_tokens: int) -> SyntheticSplit:
  classes, class_nll = _sample_classes(source, _rng(seed, stream, 0), min_tokens)
  word_ids, word_nll = _sample_words(source, _rng(seed, stream, 1), classes)
  return SyntheticSplit(lines=_lines(source, classes, word_ids),
                        cross_entropy=(class_nll + word_nll) / len(classes))


def _sample_classes(source: _Source, rng: np.random.Generator,
                    min_tokens: int) -> tuple[np.ndarray, float]:
  """Runs the class chain from (END, END) to the first END at or after min_tokens.

  Returns the class per token and the summed -log P(class | context). A plain
  Python loop over small per-context tables is faster here than numpy calls.
  """
  n = source.num_classes + 1
  flat = source.next_class_probs.reshape(n * n, n)
  choices = [np.flatnonzero(row).tolist() for row in flat]
  cumulative = []
  for row, allowed in zip(flat, choices):
    cum = np.cumsum(row[allowed])
    cum[-1] = 1.0  # a uniform in [0, 1) must always land on an allowed class
    cumulative.append(cum.tolist())
  nlls = [(-np.log(row[allowed])).tolist() for row, allowed in zip(flat, choices)]

  end = source.end
  classes: list[int] = []
  nll = 0.0
  prev2 = prev1 = end
  while True:
    chunk = max(1024, min_tokens - len(classes) + 1024)
    for u in rng.random(chunk).tolist():
      context = prev2 * n + prev1
      i = bisect.bisect_right(cumulative[context], u)
      c = choices[context][i]
      nll += nlls[context][i]
      classes.append(c)
      prev2, prev1 = prev1, c
      if c == end and len(classes) >= min_tokens:
        return np.array(classes), nll


def _sample_words(source: _Source, rng: np.random.Generator,
                  classes: np.ndarray) -> tuple[np.ndarray, float]:
  """Draws each token's word from its class; END tokens get word id -1."""
  # One uniform per token position, so a longer split extends a shorter one.
  uniforms = rng.random(len(classes))
  word_ids = np.full(len(classes), -1, dtype=np.int64)
  nll = 0.0
  for c, (words, probs) in enumerate(zip(source.class_words, source.emission_probs)):
    positions = np.flatnonzero(classes == c)
    cum = np.cumsum(probs)
    cum[-1] = 1.0
    ranks = np.searchsorted(cum, uniforms[positions], side="right")
    word_ids[positions] = words[ranks]
    nll += float(-np.log(probs[ranks]).sum())
  return word_ids, nll


def _lines(source: _Source, classes: np.ndarray, word_ids: np.ndarray) -> list[str]:
  is_end = classes == source.end
  spelled = [source.words[i] for i in word_ids[~is_end].tolist()]
  # Word index where each sentence stops: the END position minus the ENDs before it.
  ends = np.flatnonzero(is_end)
  stops = (ends - np.arange(len(ends))).tolist()
  starts = [0] + stops[:-1]
  return [" ".join(spelled[a:b]) for a, b in zip(starts, stops)]
