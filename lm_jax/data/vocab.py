"""Tokenisation and the vocabulary, exactly as the reference defines them.

Each line is split on whitespace and gets an `<eos>`; word ids are assigned in order of first
appearance over train, then valid, then test.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

import numpy as np

from lm_jax.errors import UserError

EOS = "<eos>"
UNK = "<unk>"


def tokenize(lines: Iterable[str]) -> list[str]:
  """Whitespace-split every line and close it with `<eos>`."""
  words: list[str] = []
  for line in lines:
    words.extend(line.split())
    words.append(EOS)
  return words


class Vocabulary:
  """An ordered word list with its inverse index."""

  def __init__(self, words: Sequence[str]):
    self.words: tuple[str, ...] = tuple(words)
    self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}
    if len(self.index) != len(self.words):
      raise UserError("vocabulary holds a word twice; rebuild it from the corpus")

  def __len__(self) -> int:
    return len(self.words)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Vocabulary) and self.words == other.words

  @classmethod
  def build(cls, token_streams: Iterable[Sequence[str]]) -> "Vocabulary":
    """Words in order of first appearance over the streams, in the order given."""
    first_seen: dict[str, None] = {}
    for tokens in token_streams:
      first_seen.update(dict.fromkeys(tokens))
    return cls(list(first_seen))

  def encode(self, tokens: Sequence[str]) -> np.ndarray:
    """Token ids as int32; every token must be in the vocabulary."""
    try:
      return np.fromiter((self.index[t] for t in tokens), dtype=np.int32, count=len(tokens))
    except KeyError as e:
      raise UserError(f"word {e.args[0]!r} is not in the vocabulary; use the data the model "
                      "was trained on, or retrain on this data") from None

  def encode_with_unk(self, tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Token ids with unknown words mapped to `<unk>`; also returns the unknown words."""
    if UNK not in self.index:
      unknown = [t for t in tokens if t not in self.index]
      if unknown:
        raise UserError(f"words {unknown} are not in the vocabulary and it has no {UNK}; "
                        "use words the model knows")
    unk_id = self.index.get(UNK, -1)
    ids = np.array([self.index.get(t, unk_id) for t in tokens], dtype=np.int32)
    return ids, [t for t in tokens if t not in self.index]

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self.words[int(i)] for i in ids]

  def to_json(self) -> str:
    return json.dumps(list(self.words), ensure_ascii=False)

  @classmethod
  def from_json(cls, text: str) -> "Vocabulary":
    return cls(json.loads(text))
