"""The baselines' side of the accuracy table, in a worker process: NBSVM (nbsvm.py) or fastText
(fasttext_baseline.py) on exactly the runs lm_jax's models make (`evaluation_folds` of the same config.data: the
corpus's test split, or the same cross-validation folds), on the same tokens (clean_str, the case rule), each text
whole (no max_len cut). Per run: one model per value of the baseline's hyperparameter, trained on the run's train
split; the one most accurate on its dev split scores test. Timed from reading the corpus to the last prediction,
as an lm_jax run is."""

from __future__ import annotations

import importlib
import importlib.util
import time
from typing import NamedTuple

import ml_collections
import numpy as np

from lm_jax.classify.data.config import data_config, load_corpus
from lm_jax.classify.data.prepare import tokenize_texts
from lm_jax.classify.data.splits import Fold, evaluation_folds
from lm_jax.classify.metrics import scores

from benchmarks.classification.report import fold_summary
from benchmarks.common.timing import peak_rss_mib


class Baseline(NamedTuple):
  hyperparameter: str
  grid: tuple[float, ...]
  module: str    # its fit(tokens, labels, classes, value) -> model and predict(model, tokens) -> labels
  package: str   # what it needs installed (the classify-bench extra)
  name: str


BASELINES = {
    "nbsvm": Baseline("C", (0.1, 1.0, 10.0), "benchmarks.classification.nbsvm", "sklearn", "scikit-learn"),
    "fasttext": Baseline("lr", (0.05, 0.1, 0.25, 0.5), "benchmarks.classification.fasttext_baseline", "fasttext",
                         "fastText"),
}


def missing_reason(baseline: str) -> str | None:
  """Why `baseline`'s rows cannot run here, or None when they can."""
  b = BASELINES[baseline]
  if importlib.util.find_spec(b.package) is None:
    return f"{b.name} is not installed (pip install -e '.[classify-bench]')"
  return None


def evaluate_fold(baseline: Baseline, fold: Fold, c: ml_collections.ConfigDict, num_classes: int) -> dict:
  """The fold's dev-selected model and its test scores."""
  tokens = {name: tokenize_texts(getattr(fold, name).texts, c) for name in ("train", "dev", "test")}
  module = importlib.import_module(baseline.module)
  best = None
  for value in baseline.grid:
    model = module.fit(tokens["train"], fold.train.labels_N, num_classes, value)
    dev_accuracy = float(np.mean(module.predict(model, tokens["dev"]) == fold.dev.labels_N))
    if best is None or dev_accuracy > best[0]:
      best = dev_accuracy, value, model
  dev_accuracy, value, model = best
  one_hot_NxC = np.eye(num_classes)[module.predict(model, tokens["test"])]
  test = scores(one_hot_NxC, fold.test.labels_N)
  return {"test_accuracy": test.accuracy, "test_macro_f1": test.macro_f1, "dev_accuracy": dev_accuracy,
          baseline.hyperparameter: value}


def run(baseline: str, data: dict) -> dict:
  """`baseline` on the corpus and runs `data` (a config.data as a dict) describes."""
  wall, cpu = time.perf_counter(), time.process_time()
  c = data_config(**data)
  corpus = load_corpus(c)
  records = [evaluate_fold(BASELINES[baseline], fold, c, len(corpus.classes)) for fold in evaluation_folds(corpus, c)]
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  chosen = BASELINES[baseline].hyperparameter
  return {**fold_summary(records), "train_s": wall, "wall_s": wall, "cpu_s": cpu, "hyperparameter": chosen,
          "chosen": [record[chosen] for record in records], "peak_rss_mib": peak_rss_mib()}
