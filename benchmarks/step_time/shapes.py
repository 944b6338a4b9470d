"""The benchmarked shapes and the random token streams both frameworks read.

A config is (model, size, vocabulary, dtype): the model is a cell of the `rnn` family or `transformer`,
the size its width and depth, the vocabulary a real corpus's (PTB's 10,000 or WikiText-2's 33,278), the
dtype that of the matmuls (float32, or bfloat16 with float32 parameters and accumulation).

Kept free of jax and torch imports: every worker process imports it, and a framework imported
but unused would still add to that worker's start-up time and resident memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PTB_VOCAB = 10_000
WIKITEXT2_VOCAB = 33_278
VOCABS = (PTB_VOCAB, WIKITEXT2_VOCAB)
QUICK_VOCAB = 500  # --quick's only vocabulary
DTYPES = ("float32", "bfloat16")
TRANSFORMER = "transformer"  # the model that is not an rnn cell

# emsize == nhid everywhere; medium and large use Zaremba et al.'s dropout, as the reference's README does.
# A transformer of a size has emsize = feed-forward size = nhid and the reference's 2 heads (at small: the
# reference's defaults); it is never tied, as the reference ignores --tied for Transformers.
SIZES: dict[str, dict] = {
    "small": dict(nhid=200, nlayers=2, tied=False, dropout=0.2),
    "medium": dict(nhid=650, nlayers=2, tied=True, dropout=0.5),
    "large": dict(nhid=1500, nlayers=2, tied=True, dropout=0.65),
    # A smoke test of the whole pipeline in seconds; its timings mean nothing.
    "quick": dict(nhid=32, nlayers=2, tied=False, dropout=0.2, batch=4, bptt=8, eval_batch=2, eval_windows=3,
                  gen_words=10, warmup=2, steps=3, repeats=2),
}


@dataclasses.dataclass(frozen=True)
class Shape:
  """One benchmarked configuration: model shape, workload sizes and how many calls are timed."""

  model: str           # an rnn cell (lstm, gru, rnn_tanh, rnn_relu) or `transformer`
  size: str
  vocab: int
  dtype: str           # the matmuls' dtype, one of DTYPES
  nhid: int            # also the embedding size
  nlayers: int
  tied: bool
  dropout: float
  lr: float
  clip: float
  nhead: int = 2       # transformer only: the reference's default
  batch: int = 20
  bptt: int = 35
  eval_batch: int = 10
  eval_windows: int = 20   # whole windows of `bptt` per evaluation
  train_windows: int = 10  # distinct training windows, cycled
  gen_words: int = 100     # words per generated sample
  gen_samples: tuple[int, ...] = (1, 32)  # samples generated at once (N); PyTorch's reference loop has N = 1 only
  warmup: int = 3          # train steps before timing, the first one compiling
  steps: int = 20          # timed train steps (and recurrence forwards)
  repeats: int = 5         # timed evaluations and generations

  @property
  def train_tokens(self) -> int:
    return self.batch * self.bptt

  @property
  def eval_tokens(self) -> int:
    return self.eval_batch * self.bptt * self.eval_windows


def make_shape(model: str, size: str, vocab: int, dtype: str, lr: float, clip: float,
               steps: int | None = None) -> Shape:
  fields = dict(SIZES[size])
  fields["tied"] = fields["tied"] and model != TRANSFORMER
  shape = Shape(model=model, size=size, vocab=vocab, dtype=dtype, lr=lr, clip=clip, **fields)
  return dataclasses.replace(shape, steps=steps) if steps else shape


def mean_cached_words(shape: Shape) -> float:
  """Words a transformer's key/value cache holds while generating, on average over a sample."""
  return (shape.gen_words + 1) / 2


def random_stream(shape: Shape, batch: int, windows: int, seed: int) -> np.ndarray:
  """Uniform random ids filling exactly `windows` whole windows once batchified at `batch`."""
  rows = windows * shape.bptt + 1  # +1: the last window's targets
  return np.random.default_rng(seed).integers(0, shape.vocab, rows * batch, dtype=np.int32)
