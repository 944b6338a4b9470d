"""Kim's CNN's speed, lm_jax against the PyTorch reference (torch_reference/kim_cnn.py), in a worker process per
framework: the same weights (lm_jax's initial ones, its output layer drawn at random so that predictions differ
from example to example, through a .npz file the lm_jax worker writes and the PyTorch one reads), the same random
batches, the same shapes. Predictions first, at those weights (each side returns its first rows' probabilities, so
the report can show that both compute the same function), then training: one Adadelta step and Kim's max-norm per
batch, as `lm-jax-classify` trains. Each callable returns once its work is done, so wall-clock time around it is
the time of the work."""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Callable, NamedTuple

import numpy as np

from benchmarks.common.timing import median_seconds, peak_rss_mib, seconds

# Only the framework measured is imported into its worker.
WORKLOADS = {"lm_jax": "benchmarks.classification.jax_speed", "pytorch": "benchmarks.classification.torch_speed"}
CHECKED_ROWS = 4  # rows of the prediction batch whose probabilities each side returns


@dataclasses.dataclass(frozen=True)
class Shape:
  """Kim's CNN-rand at MR's scale: its vocabulary (Kim's Table 1), its longest bucket (sentences of up to 56 tokens
  -> 64), Kim's batch of 50; predictions in batches of classify_config's eval_batch_size."""
  vocab: int = 18_765
  classes: int = 2
  emsize: int = 300
  filter_widths: tuple[int, ...] = (3, 4, 5)
  filter_maps: int = 100
  batch: int = 50
  length: int = 64
  predict_batch: int = 200
  batches: int = 4      # distinct training batches, cycled
  warmup: int = 3       # train steps before the timed ones (the first compiles)
  steps: int = 20       # timed train steps: their median
  repeats: int = 20     # timed predictions, after one that compiles: their median


QUICK_SHAPE = Shape(vocab=300, emsize=16, filter_maps=8, batch=8, length=16, predict_batch=16, warmup=2, steps=3,
                    repeats=3)


class Workload(NamedTuple):
  train_step: Callable[[int], None]          # one step on training batch i
  predict: Callable[[], np.ndarray]          # the prediction batch's probabilities [B, C]
  device: str


def random_batch(shape: Shape, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(tokens_BxT int32, mask_BxT bool, labels_B int32): rows of shape.length // 2 + 1 .. shape.length real tokens
  (the longest bucket holds them), ids past <pad> and <unk>, zeros after each row's end."""
  rng = np.random.default_rng(seed)
  lengths_B = rng.integers(shape.length // 2 + 1, shape.length + 1, size=batch_size)
  mask_BxT = np.arange(shape.length)[None, :] < lengths_B[:, None]
  tokens_BxT = np.where(mask_BxT, rng.integers(2, shape.vocab, size=mask_BxT.shape), 0).astype(np.int32)
  return tokens_BxT, mask_BxT, rng.integers(shape.classes, size=batch_size).astype(np.int32)


def training_batches(shape: Shape) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  return [random_batch(shape, shape.batch, seed=1 + i) for i in range(shape.batches)]


def prediction_batch(shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  return random_batch(shape, shape.predict_batch, seed=0)


def measure(workload: Workload, shape: Shape) -> dict:
  """Predictions (the first compiles; the median of `repeats` after it), then training (`warmup` steps, the first
  compiling, then the median of `steps`). Compile time: the first call minus the median."""
  first_predict_s = seconds(workload.predict)
  probs_BxC = workload.predict()
  predict_s = median_seconds(workload.predict, shape.repeats)
  first_step_s = seconds(lambda: workload.train_step(0))
  for i in range(1, shape.warmup):
    workload.train_step(i % shape.batches)
  step_s = np.median([seconds(lambda: workload.train_step(i % shape.batches))
                      for i in range(shape.warmup, shape.warmup + shape.steps)])
  return {"device": workload.device,
          "train_ms": 1000 * step_s, "train_examples_per_s": shape.batch / step_s,
          "train_compile_s": first_step_s - step_s,
          "predict_ms": 1000 * predict_s, "predict_examples_per_s": shape.predict_batch / predict_s,
          "predict_compile_s": first_predict_s - predict_s,
          "probabilities": np.asarray(probs_BxC[:CHECKED_ROWS], np.float64).tolist(),
          "peak_rss_mib": peak_rss_mib(), "load_average": os.getloadavg()[0]}


def run(framework: str, shape: dict, weights_path: str) -> dict:
  """A worker's measurement of `shape` (as a dict) in `framework`."""
  shape = Shape(**{**shape, "filter_widths": tuple(shape["filter_widths"])})  # JSON made it a list
  return measure(importlib.import_module(WORKLOADS[framework]).build(shape, weights_path), shape)
