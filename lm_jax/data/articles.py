"""Articles: where they start in a split, the 'articles' source (.npy arrays of ids), and an epoch's shuffle.

A corpus with articles keeps the token offsets where its training split's articles start. WikiText marks
them with top-level heading lines (` = Title = `); the 'articles' source hands them over one array each.
Shuffling whole articles (config.data.shuffle_articles) reorders them each epoch and keeps every article's
tokens together, so the carried hidden state still sees running text inside an article.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from lm_jax.errors import UserError

FORMAT = ("train.npy, valid.npy and test.npy (each a 1-D NumPy object array of 1-D integer arrays, one per "
          "article) and vocab.txt (one word per line, the id is the line number)")


def is_article_heading(words: Sequence[str]) -> bool:
  """WikiText's top-level heading ` = Title = `: one `=` on each side; ` = = Section = = ` is inside an article."""
  return len(words) >= 3 and words[0] == words[-1] == "=" and words[1] != "=" and words[-2] != "="


def heading_starts(lines: Sequence[str]) -> np.ndarray | None:
  """Token offsets (with tokenize's one `<eos>` per line) where articles start: 0, then every top-level
  heading line after the first heading (what precedes that one, WikiText's blank first line, opens the first
  article); None when no line is a heading (the data has no articles)."""
  starts, offset, headings = [0], 0, 0
  for line in lines:
    words = line.split()
    if is_article_heading(words):
      if headings:
        starts.append(offset)
      headings += 1
    offset += len(words) + 1
  return np.array(starts, np.int64) if headings else None


def shuffled_articles(ids: np.ndarray, starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """The articles of `ids` (the one at each of `starts` runs to the next) in an order drawn from `rng`."""
  articles = np.split(ids, starts[1:])
  return np.concatenate([articles[i] for i in rng.permutation(len(articles))])


def read_article_arrays(directory: str) -> tuple[list[str], dict[str, list[np.ndarray]]]:
  """vocab.txt's words and each split's articles as int32 arrays, every id checked against the vocabulary."""
  if not os.path.isdir(directory):
    raise UserError(f"data directory {directory!r} does not exist; set --config.data.dir to a directory holding "
                    f"{FORMAT}")
  names = ("train.npy", "valid.npy", "test.npy", "vocab.txt")
  missing = [name for name in names if not os.path.isfile(os.path.join(directory, name))]
  if missing:
    raise UserError(f"data directory {directory!r} lacks {', '.join(missing)}; the 'articles' source needs {FORMAT}")
  words = _read_vocab(os.path.join(directory, "vocab.txt"))
  splits = {split: _read_articles(os.path.join(directory, f"{split}.npy"), len(words))
            for split in ("train", "valid", "test")}
  return words, splits


def _read_vocab(path: str) -> list[str]:
  try:
    with open(path, encoding="utf-8", newline="") as f:
      text = f.read()
  except UnicodeDecodeError:
    raise UserError(f"{path} is not UTF-8 text; write it as UTF-8, one word per line") from None
  # Only newlines separate words: a word may hold any other character str.splitlines would break at.
  words = [word.rstrip("\r") for word in text.split("\n")]
  if words and words[-1] == "":
    words.pop()  # the final newline
  if not words:
    raise UserError(f"{path} is empty; it needs one word per line")
  seen: dict[str, int] = {}
  for line, word in enumerate(words, 1):
    if word in seen:
      raise UserError(f"{path} lists {word!r} twice (lines {seen[word]} and {line}); one line per word, each "
                      "word once")
    seen[word] = line
  return words


def _read_articles(path: str, vocab_size: int) -> list[np.ndarray]:
  fix = "save a 1-D object array of 1-D integer arrays, one per article: a = np.empty(n, dtype=object); " \
        "a[:] = articles; np.save(path, a)"
  try:
    array = np.load(path, allow_pickle=True)
  except Exception as e:  # a damaged or foreign file raises any of ValueError, OSError, EOFError, UnpicklingError
    raise UserError(f"{path} is not a NumPy .npy file ({type(e).__name__}); {fix}") from None
  if not isinstance(array, np.ndarray) or array.dtype != object or array.ndim != 1:
    what = f"a {array.ndim}-D {array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
    raise UserError(f"{path} holds {what}, not a 1-D object array of articles; {fix}")
  if not len(array):
    raise UserError(f"{path} holds no articles; {fix}")
  articles = []
  for k, article in enumerate(array):
    ids = np.asarray(article)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
      raise UserError(f"{path}: article {k} is a {ids.ndim}-D {ids.dtype} array, not a 1-D array of integer ids; "
                      f"{fix}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
      bad = ids.min() if ids.min() < 0 else ids.max()
      raise UserError(f"{path}: article {k} holds id {bad}, outside 0..{vocab_size - 1} (vocab.txt has "
                      f"{vocab_size:,} words); use the vocab.txt these ids were made with")
    articles.append(ids.astype(np.int32))
  return articles
