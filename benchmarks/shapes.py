"""The benchmarked shapes and the random token streams both frameworks read.

Kept free of jax and torch imports: every worker process imports it, and a framework imported
but unused would still add to that worker's start-up time and resident memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

WIKITEXT2_VOCAB = 33_278

# emsize == nhid everywhere; medium and large use Zaremba et al.'s dropout, as the reference's README does.
SIZES: dict[str, dict] = {
    "small": dict(vocab=WIKITEXT2_VOCAB, nhid=200, nlayers=2, tied=False, dropout=0.2),
    "medium": dict(vocab=WIKITEXT2_VOCAB, nhid=650, nlayers=2, tied=True, dropout=0.5),
    "large": dict(vocab=WIKITEXT2_VOCAB, nhid=1500, nlayers=2, tied=True, dropout=0.65),
    # A smoke test of the whole pipeline in seconds; its timings mean nothing.
    "quick": dict(vocab=500, nhid=32, nlayers=2, tied=False, dropout=0.2, batch=4, bptt=8, eval_batch=2,
                  eval_windows=3, gen_words=10, warmup=2, steps=3, repeats=2),
}


@dataclasses.dataclass(frozen=True)
class Shape:
  """One benchmarked configuration: model shape, workload sizes and how many calls are timed."""

  cell: str
  size: str
  vocab: int
  nhid: int            # also the embedding size
  nlayers: int
  tied: bool
  dropout: float
  lr: float
  clip: float
  batch: int = 20
  bptt: int = 35
  eval_batch: int = 10
  eval_windows: int = 20   # whole windows of `bptt` per evaluation
  train_windows: int = 10  # distinct training windows, cycled
  gen_words: int = 100
  warmup: int = 3          # train steps before timing, the first one compiling
  steps: int = 20          # timed train steps
  repeats: int = 5         # timed evaluations and generations

  @property
  def train_tokens(self) -> int:
    return self.batch * self.bptt

  @property
  def eval_tokens(self) -> int:
    return self.eval_batch * self.bptt * self.eval_windows


def make_shape(cell: str, size: str, lr: float, clip: float, steps: int | None = None) -> Shape:
  shape = Shape(cell=cell, size=size, lr=lr, clip=clip, **SIZES[size])
  return dataclasses.replace(shape, steps=steps) if steps else shape


def random_stream(shape: Shape, batch: int, windows: int, seed: int) -> np.ndarray:
  """Uniform random ids filling exactly `windows` whole windows once batchified at `batch`."""
  rows = windows * shape.bptt + 1  # +1: the last window's targets
  return np.random.default_rng(seed).integers(0, shape.vocab, rows * batch, dtype=np.int32)
