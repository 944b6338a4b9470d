"""Pronounceable pseudo-words for synthetic corpora: consonant-vowel syllables, shortest for the most frequent
words, as in real language."""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def spell_words(rng: np.random.Generator, word_freq: np.ndarray) -> list[str]:
  """A distinct spelling for each word id, shorter for higher `word_freq`; ties in length drawn from `rng`."""
  syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
  spellings = list(itertools.islice(_words_by_length(syllables), len(word_freq)))
  lengths = np.array([len(s) for s in spellings])
  # Shuffle within each length so frequent words are not just alphabetical.
  order = np.lexsort((rng.random(len(spellings)), lengths))
  by_frequency = np.argsort(-word_freq, kind="stable")
  words = [""] * len(word_freq)
  for word_id, spelling_id in zip(by_frequency, order):
    words[word_id] = spellings[spelling_id]
  return words


def _words_by_length(syllables: list[str]) -> Iterator[str]:
  for length in itertools.count(1):
    for parts in itertools.product(syllables, repeat=length):
      yield "".join(parts)
