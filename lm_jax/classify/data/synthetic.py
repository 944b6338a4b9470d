"""A synthetic labelled corpus whose Bayes accuracy is known exactly: the classification twin of
lm_jax/data/synthetic.py's perplexity floor.

The generative model. A document's class y is uniform over C classes. Its length L is uniform over
[min_words, max_words], whatever the class. Each of its L words is drawn independently:
- with probability 1 - s (s = signal_prob) a noise word, Zipfian over `noise_words` words, the same for every
  class;
- with probability s a signal word: C sets of K = `signal_words` words each, set y with probability q
  (`own_class_prob`), each other set with probability r = (1 - q) / (C - 1), uniform inside the set.
Noise words, the length and the word inside a set carry no information about y, so the posterior depends on the
document only through n = (n_1..n_C), its count of words from each signal set, and P(n | y) is proportional to
q^{n_y} r^{m - n_y}, m = n_1 + ... + n_C. With q > r the Bayes rule predicts the class with the most signal words
(any class among ties), and its accuracy E_x[max_y P(y | x)] is, exactly,

  A = sum_L P(L) sum_m Binom(m; L, s) (1/C) sum_M T(m, M) q^M r^(m - M),

T(m, M) being the number of words of length m over C letters whose most frequent letter occurs exactly M times
(integers, counted exactly). `bayes_accuracy` evaluates this sum; nothing is estimated.

Every split is its own stream from the same source, so each has the same expected Bayes accuracy; a finite
split's achieved accuracy scatters around it with binomial standard deviation sqrt(A (1 - A) / n).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lm_jax.classify.data.corpus import LabelledCorpus, LabelledSplit
from lm_jax.errors import UserError

SPLITS = ("train", "dev", "test")
_TABLES_STREAM = len(SPLITS)  # rng streams 0..2 are the splits
# The exact sum's cost grows as num_classes * max_words^3 (integer arithmetic): a few seconds at these bounds.
_MOST_CLASSES, _MOST_WORDS = 20, 100


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
  """The generative model's settings (module docstring), each a `config.data.synthetic` field."""
  seed: int = 0
  num_classes: int = 4
  noise_words: int = 300
  signal_words: int = 5
  signal_prob: float = 0.15
  own_class_prob: float = 0.9
  min_words: int = 8
  max_words: int = 24

  def validate(self) -> None:
    def need(ok: bool, problem: str, fix: str) -> None:
      if not ok:
        raise UserError(f"config.data.synthetic.{problem}; {fix}")

    c = self.num_classes
    need(self.seed >= 0, f"seed must be >= 0 (got {self.seed})", "pass a seed >= 0")
    need(2 <= c <= _MOST_CLASSES, f"num_classes must be in 2..{_MOST_CLASSES} (got {c})",
         f"pass 2 <= num_classes <= {_MOST_CLASSES} (the exact Bayes sum grows with it)")
    need(self.noise_words >= 1, f"noise_words must be >= 1 (got {self.noise_words})", "pass noise_words >= 1")
    need(self.signal_words >= 1, f"signal_words must be >= 1 (got {self.signal_words})", "pass signal_words >= 1")
    need(0 < self.signal_prob < 1, f"signal_prob must be in (0, 1) (got {self.signal_prob})",
         "pass e.g. signal_prob=0.15")
    need(1 / c < self.own_class_prob <= 1, f"own_class_prob must be in (1/num_classes, 1] (got "
         f"{self.own_class_prob})", "pass a value above 1/num_classes so a class's own words are its likeliest")
    need(1 <= self.min_words <= self.max_words <= _MOST_WORDS, f"min_words..max_words must be a range of "
         f"lengths in 1..{_MOST_WORDS} (got {self.min_words}..{self.max_words})",
         f"pass 1 <= min_words <= max_words <= {_MOST_WORDS} (the exact Bayes sum grows as max_words^3)")

  @property
  def other_class_prob(self) -> float:
    return (1.0 - self.own_class_prob) / (self.num_classes - 1)

  def word_probs_CxV(self) -> np.ndarray:
    """P(word | class) over the vocabulary: signal sets first (set c = words c*K .. c*K + K - 1), then noise."""
    c, k = self.num_classes, self.signal_words
    set_probs_CxC = np.full((c, c), self.other_class_prob)
    np.fill_diagonal(set_probs_CxC, self.own_class_prob)
    signal_CxV = np.repeat(set_probs_CxC, k, axis=1) * self.signal_prob / k
    zipf = 1.0 / np.arange(1, self.noise_words + 1)
    noise_V = (1.0 - self.signal_prob) * zipf / zipf.sum()
    return np.concatenate([signal_CxV, np.broadcast_to(noise_V, (c, self.noise_words))], axis=1)

  def words(self) -> tuple[str, ...]:
    """Word spellings `w<n>`, numbered in an order drawn from the seed, so a name says nothing of its set."""
    size = self.num_classes * self.signal_words + self.noise_words
    numbers = _rng(self.seed, _TABLES_STREAM).permutation(size)
    return tuple(f"w{n}" for n in numbers)


def bayes_accuracy(source: SyntheticSource) -> float:
  """The exact accuracy of the Bayes classifier (the module docstring's sum)."""
  c, s, q, r = source.num_classes, source.signal_prob, source.own_class_prob, source.other_class_prob
  longest = source.max_words
  capped = [_capped_words(cap, longest, c) for cap in range(longest + 1)]  # [M][m]: no letter over M times

  def max_count_words(m: int, most: int) -> int:  # T(m, M)
    return capped[most][m] - (capped[most - 1][m] if most > 0 else 0)

  by_signal_count = [sum(max_count_words(m, M) * q**M * r ** (m - M) for M in range(m + 1)) / c
                     for m in range(longest + 1)]
  lengths = range(source.min_words, longest + 1)
  total = sum(math.comb(length, m) * s**m * (1 - s) ** (length - m) * by_signal_count[m]
              for length in lengths for m in range(length + 1))
  return total / len(lengths)


def _capped_words(cap: int, longest: int, letters: int) -> list[int]:
  """[m]: the number of words of length m (0..longest) over `letters` letters with no letter more than `cap`
  times, exactly, adding one letter at a time: a new letter takes k of the m positions (comb(m, k) ways)."""
  ways = [1] + [0] * longest
  for _ in range(letters):
    ways = [sum(math.comb(m, k) * ways[m - k] for k in range(min(cap, m) + 1)) for m in range(longest + 1)]
  return ways


def bayes_predictions(source: SyntheticSource, texts: list[str]) -> np.ndarray:
  """The Bayes rule from the whole generative model: argmax_y sum_words log P(word | y) (uniform prior; ties go
  to the lowest class), int32 per text. An independent check of `bayes_accuracy`: it reads every word's
  probability, where the formula only counts signal words."""
  index = {w: i for i, w in enumerate(source.words())}
  log_probs_VxC = np.log(source.word_probs_CxV()).T
  scores_NxC = np.stack([log_probs_VxC[[index[w] for w in text.split()]].sum(axis=0) for text in texts])
  return np.argmax(scores_NxC, axis=1).astype(np.int32)


def sample_split(source: SyntheticSource, size: int, stream: int) -> LabelledSplit:
  """`size` documents drawn from the source on rng stream `stream` (0, 1, 2: train, dev, test)."""
  rng = _rng(source.seed, stream)
  words = np.array(source.words())
  probs_CxV = source.word_probs_CxV()
  labels_N = rng.integers(source.num_classes, size=size).astype(np.int32)
  lengths_N = rng.integers(source.min_words, source.max_words + 1, size=size)
  cumulative_CxV = np.cumsum(probs_CxV, axis=1)
  cumulative_CxV[:, -1] = 1.0  # a uniform in [0, 1) always lands on a word
  texts = []
  for label, length in zip(labels_N.tolist(), lengths_N.tolist()):
    word_ids = np.searchsorted(cumulative_CxV[label], rng.random(length), side="right")
    texts.append(" ".join(words[word_ids]))
  return LabelledSplit(texts, labels_N)


def synthetic_corpus(source: SyntheticSource, sizes: dict[str, int]) -> LabelledCorpus:
  """Splits of the given sizes ({'train': N, 'dev': N, 'test': N}; a size of 0 leaves the split out), with
  the exact Bayes accuracy for each."""
  source.validate()
  for split, size in sizes.items():
    if size < 0:
      raise UserError(f"config.data.synthetic.{split}_size must be >= 0 (got {size}); pass a count of documents")
  if not sizes.get("train"):
    raise UserError("config.data.synthetic.train_size must be > 0; pass a count of training documents")
  splits = {split: sample_split(source, sizes[split], stream) for stream, split in enumerate(SPLITS)
            if sizes.get(split)}
  accuracy = bayes_accuracy(source)
  return LabelledCorpus(name="synthetic", splits=splits,
                        classes=tuple(f"class{c}" for c in range(source.num_classes)),
                        bayes_accuracy={split: accuracy for split in splits})


def _rng(seed: int, *stream: int) -> np.random.Generator:
  # Independent child streams: each split and the word names never share draws.
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))
