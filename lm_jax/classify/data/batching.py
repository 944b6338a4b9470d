"""Padded, length-bucketed batches of static shapes: every batch has `batch_size` rows and a length T from a
small fixed set (`bucket_lengths`), so a jitted step compiles at most once per bucket length.

Each example goes to the shortest bucket that holds it. Buckets are cut into batches from the shortest up; the
examples left over at a bucket (fewer than a batch) move up into the next bucket, which holds them too, so only
the very last batch can be partial. It is padded to `batch_size` with rows of weight 0 (no tokens, label 0,
index -1). A batch's T is the shortest bucket length holding its longest row. Training (an rng given): each
bucket's examples in a random order, and the batches in a random order; evaluation (rng None): buckets in
order, examples in corpus order within each, and `index_B` says where each row's example is.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

from lm_jax.classify.data.text import PAD_ID

SMALLEST_BUCKET = 8


class Batch(NamedTuple):  # a NamedTuple: a pytree, so a jitted step takes it whole
  tokens_BxT: np.ndarray  # int32 token ids, PAD_ID (0) after each row's end
  mask_BxT: np.ndarray    # bool, True on real tokens
  labels_B: np.ndarray    # int32 class ids; 0 on padding rows
  weight_B: np.ndarray    # float32: 1 for an example, 0 for a padding row
  index_B: np.ndarray     # int32: the example's position in the split; -1 on padding rows


def bucket_lengths(max_len: int, smallest: int = SMALLEST_BUCKET) -> tuple[int, ...]:
  """Powers of two from `smallest` up to below `max_len`, then `max_len` itself: (8, 16, 32, 64, 100) for 100.
  Padding wastes under half of any row, and there are about log2(max_len / smallest) + 1 lengths to compile."""
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1 (got {max_len})")
  lengths = []
  length = smallest
  while length < max_len:
    lengths.append(length)
    length *= 2
  return tuple(lengths) + (max_len,)


def bucketed_batches(ids: Sequence[np.ndarray], labels_N: np.ndarray, batch_size: int,
                     bucket_lengths: Sequence[int], rng: np.random.Generator | None = None) -> Iterator[Batch]:
  """Every example exactly once, in batches as the module docstring says. `ids`: int32 token ids per example, none
  longer than the last bucket length (text.encode cuts them); `rng`: shuffles (training) or None (evaluation)."""
  lengths_N = np.array([len(x) for x in ids], dtype=np.int64)
  buckets = np.asarray(bucket_lengths)
  if len(ids) and lengths_N.max() > buckets[-1]:
    raise ValueError(f"an example has {lengths_N.max()} tokens, more than the longest bucket {buckets[-1]}; "
                     "cut the examples to it first (text.encode's max_len)")
  bucket_N = np.searchsorted(buckets, lengths_N)  # the first bucket length >= the example's length
  rows = []
  carried = np.zeros(0, np.int64)
  for b in range(len(buckets)):
    members = np.flatnonzero(bucket_N == b)
    if rng is not None:
      members = rng.permutation(members)
    pool = np.concatenate([carried, members])
    whole = len(pool) // batch_size * batch_size
    rows += np.split(pool[:whole], whole // batch_size) if whole else []
    carried = pool[whole:]
  if len(carried):
    rows.append(carried)
  order = rng.permutation(len(rows)) if rng is not None else range(len(rows))
  for i in order:
    yield _batch(ids, labels_N, rows[i], lengths_N, buckets, batch_size)


def _batch(ids: Sequence[np.ndarray], labels_N: np.ndarray, members: np.ndarray, lengths_N: np.ndarray,
           buckets: np.ndarray, batch_size: int) -> Batch:
  t = int(buckets[np.searchsorted(buckets, lengths_N[members].max())])
  tokens_BxT = np.full((batch_size, t), PAD_ID, np.int32)
  for row, example in enumerate(members):
    tokens_BxT[row, : lengths_N[example]] = ids[example]
  mask_BxT = np.arange(t)[None, :] < _padded(lengths_N[members], batch_size, 0)[:, None]
  return Batch(tokens_BxT, mask_BxT, _padded(np.asarray(labels_N)[members], batch_size, 0).astype(np.int32),
               _padded(np.ones(len(members)), batch_size, 0).astype(np.float32),
               _padded(members, batch_size, -1).astype(np.int32))


def _padded(values: np.ndarray, size: int, fill: int) -> np.ndarray:
  return np.concatenate([values, np.full(size - len(values), fill, dtype=values.dtype)])
