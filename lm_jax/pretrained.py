"""Pretrained word vectors (config.model.pretrained_embeddings): read a GloVe / word2vec / fastText text
file, match its words to the vocabulary, and copy the matched rows into the embedding matrix.

The formats are one: a word and its D values per line, separated by spaces. word2vec and fastText
(.vec) files start with a "count dim" header line, GloVe files do not; either may be gzip-compressed
(told by the magic bytes, not the name). A vocabulary word takes the file's vector of the same word,
else that of its lower-cased form (GloVe's uncased files); words matched neither way keep their
initial rows. No projection: the file's D must be the model's embedding size.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Iterator, Sequence

import numpy as np

from lm_jax.errors import UserError
from lm_jax.models.interface import LanguageModel, Params

GZIP_MAGIC = b"\x1f\x8b"


def _lines(path: str) -> Iterator[str]:
  if not os.path.isfile(path):
    raise UserError(f"pretrained embeddings file {path!r} does not exist; pass an existing GloVe / word2vec / "
                    "fastText text file to --config.model.pretrained_embeddings")
  with open(path, "rb") as f:
    compressed = f.read(2) == GZIP_MAGIC
  with (gzip.open if compressed else open)(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      try:
        yield raw.decode("utf-8")
      except UnicodeDecodeError:
        raise UserError(f"{path} line {number} is not UTF-8 text; convert the file with `iconv -t utf-8`") from None


def _header_dim(fields: list[str]) -> int | None:
  """D of a word2vec / fastText "count dim" header line; None for a GloVe file's first vector."""
  return int(fields[1]) if len(fields) == 2 and all(f.isdigit() for f in fields) else None


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def read_vectors(path: str) -> tuple[list[str], np.ndarray]:
  """The words of the file at `path` and their vectors [N, D] (float32), in file order. D is the header's,
  else the first row's. A row with fewer values, or more values (numbers where the word should end), or a
  value that is not a number, is a UserError naming its line. Entries whose word holds spaces (GloVe
  840B's ". . .") are left out: no word of a whitespace-tokenised vocabulary can match them. A header's
  count is not checked: a file cut short with `head` keeps it."""
  words, rows = [], []
  dim = None
  for number, line in enumerate(_lines(path), 1):
    # Split on " " only: fastText's words may hold other whitespace (U+2009, U+00A0).
    fields = line.rstrip("\r\n").rstrip(" ").split(" ")
    if number == 1 and (header_dim := _header_dim(fields)) is not None:
      dim = header_dim
      continue
    if fields == [""]:
      continue  # a blank line (a trailing one, typically)
    dim = len(fields) - 1 if dim is None else dim
    word_fields, values = fields[:len(fields) - dim], fields[len(fields) - dim:]
    if len(fields) <= dim or (len(word_fields) > 1 and all(map(_is_number, word_fields[1:]))):
      raise UserError(f"{path} line {number}: {len(fields) - 1} values where the file's rows have {dim}; fix or drop "
                      "that line (every row is a word and the same number of values)")
    if len(word_fields) > 1:
      continue
    try:
      rows.append(np.array(values, np.float32))
    except ValueError:
      raise UserError(f"{path} line {number} holds a value that is not a number ({line[:60].strip()!r}...); fix "
                      "or drop that line") from None
    words.append(word_fields[0])
  if not rows or dim == 0:
    raise UserError(f"{path} holds no word vectors; pass a GloVe / word2vec / fastText text file")
  return words, np.stack(rows)


@dataclasses.dataclass(frozen=True)
class Matched:
  """The file's vectors for the vocabulary words it covers."""

  ids: np.ndarray      # [M] vocabulary ids of the matched words
  rows_MxD: np.ndarray  # their vectors
  exact: int           # matched by the word itself
  lower: int           # matched by its lower-cased form

  def coverage(self, vocab_size: int, path: str) -> str:
    matched = self.exact + self.lower
    return (f"| pretrained embeddings: {matched:,} of {vocab_size:,} words ({100 * matched / vocab_size:.1f}%) from "
            f"{path}, {self.exact:,} exact, {self.lower:,} lower-case")


def match(vocab_words: Sequence[str], file_words: Sequence[str], vectors_NxD: np.ndarray) -> Matched:
  """Each vocabulary word's row: the file's row of the word, else of the word lower-cased; the first
  occurrence when a file repeats a word."""
  row_of: dict[str, int] = {}
  for row, word in enumerate(file_words):
    row_of.setdefault(word, row)
  ids, rows, exact = [], [], 0
  for i, word in enumerate(vocab_words):
    row = row_of.get(word, row_of.get(word.lower()))
    if row is not None:
      ids.append(i)
      rows.append(row)
      exact += word in row_of
  return Matched(np.array(ids, np.int32), vectors_NxD[np.array(rows, np.int64)],
                 exact, len(ids) - exact)


def load_into(model: LanguageModel, params: Params, vocab_words: Sequence[str], path: str) -> tuple[Params, Matched]:
  """`params` with the file's vectors in the embedding rows of the words they match, and the match."""
  embedding_VxE = np.asarray(params[model.embedding_param])
  file_words, vectors_NxD = read_vectors(path)
  if vectors_NxD.shape[1] != embedding_VxE.shape[1]:
    raise UserError(f"{path} has {vectors_NxD.shape[1]}-dim vectors but model.emsize is {embedding_VxE.shape[1]}; "
                    f"set --config.model.emsize={vectors_NxD.shape[1]} (no projection is applied)")
  matched = match(vocab_words, file_words, vectors_NxD)
  embedding_VxE = embedding_VxE.copy()
  embedding_VxE[matched.ids] = matched.rows_MxD
  return {**params, model.embedding_param: embedding_VxE}, matched
