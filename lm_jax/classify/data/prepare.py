"""A fold's texts as the model sees them: tokenised as `config.data` says, the vocabulary built from the fold's
training split, every split encoded and cut to `max_len`."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import ml_collections
import numpy as np

from lm_jax.classify.data.config import lowercase_of
from lm_jax.classify.data.splits import Fold
from lm_jax.classify.data.text import UNK, build_vocabulary, encode, tokenize
from lm_jax.data.vocab import Vocabulary


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  ids: list[np.ndarray]   # int32 token ids per example, at most max_len of them
  labels_N: np.ndarray    # int32
  num_cut: int            # examples longer than max_len, cut to it


@dataclasses.dataclass(frozen=True)
class EncodedFold:
  name: str
  vocab: Vocabulary               # <pad> 0, <unk> 1, then the fold's training words (or the one a family reads)
  splits: dict[str, EncodedSplit]  # 'train', 'dev', 'test'

  def known_fraction(self) -> float:
    """The fraction of the training split's tokens (as cut to max_len) that are not `<unk>`."""
    ids = np.concatenate([np.zeros(0, np.int32)] + self.splits["train"].ids)
    return float(np.mean(ids != self.vocab.index.get(UNK, -1))) if len(ids) else 1.0


def tokenize_texts(texts: Sequence[str], c: ml_collections.ConfigDict) -> list[list[str]]:
  """Each text's tokens under config.data's clean and lowercase (TREC: lower-casing off unless set)."""
  lowercase = lowercase_of(c)
  return [tokenize(text, clean=c.clean, lowercase=lowercase) for text in texts]


def encode_texts(texts: Sequence[str], vocab: Vocabulary, c: ml_collections.ConfigDict) -> tuple[list[np.ndarray], int]:
  """Texts (a split, or lines to predict) as token ids under config.data, and how many were cut to max_len."""
  return encode(tokenize_texts(texts, c), vocab, c.max_len)


def encode_fold(fold: Fold, c: ml_collections.ConfigDict, vocab: Vocabulary | None = None) -> EncodedFold:
  """The fold's splits as ids in `vocab`, or by default in one built from its training split."""
  tokens = {name: tokenize_texts(getattr(fold, name).texts, c) for name in ("train", "dev", "test")}
  vocab = build_vocabulary(tokens["train"], c.min_count) if vocab is None else vocab
  splits = {}
  for name, token_lists in tokens.items():
    ids, num_cut = encode(token_lists, vocab, c.max_len)
    splits[name] = EncodedSplit(ids, getattr(fold, name).labels_N, num_cut)
  return EncodedFold(fold.name, vocab, splits)
