"""Which examples train, select and test a model: the corpus's own splits where it has them, otherwise stratified
k-fold cross-validation; a dev split held out of train (stratified, 10% as Kim) where the corpus has none.
Everything is drawn from a seed, so the same seed gives the same folds on any machine."""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from lm_jax.classify.data.corpus import LabelledCorpus, LabelledSplit
from lm_jax.errors import UserError

_FOLDS_STREAM, _DEV_STREAM = 0, 1  # a seed's two independent rng streams


@dataclasses.dataclass(frozen=True)
class Fold:
  name: str            # 'test' (the corpus's own split) or 'fold 3/10'
  train: LabelledSplit
  dev: LabelledSplit
  test: LabelledSplit


def stratified_folds(labels_N: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """k (train indices, test indices) pairs, each sorted: the test sets are disjoint and cover every example once,
  and each class's examples are spread over the folds as evenly as possible (per-class counts differ by at most
  one between folds, as do the fold sizes). A class with fewer than k examples is a UserError."""
  labels_N = np.asarray(labels_N)
  classes, counts = np.unique(labels_N, return_counts=True)
  if k < 2:
    raise UserError(f"cross-validation needs at least 2 folds (got {k}); pass --config.data.folds=10 (or 0 for the "
                    "corpus's own test split)")
  if counts.min() < k:
    smallest = classes[np.argmin(counts)]
    raise UserError(f"{k}-fold cross-validation needs at least {k} examples of every class, and class {smallest} "
                    f"has {counts.min()}; pass --config.data.folds={counts.min()} or fewer")
  rng = _rng(seed, _FOLDS_STREAM)
  fold_N = np.empty(len(labels_N), np.int64)
  dealt = 0  # dealing continues across classes, so the fold sizes stay within one of each other too
  for label in classes:
    members = rng.permutation(np.flatnonzero(labels_N == label))
    fold_N[members] = (dealt + np.arange(len(members))) % k
    dealt += len(members)
  return [(np.flatnonzero(fold_N != f), np.flatnonzero(fold_N == f)) for f in range(k)]


def hold_out_dev(labels_N: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, dev indices), sorted: round(fraction * n_c) examples of each class c, drawn from the seed,
  go to dev (every class keeps at least one training example)."""
  labels_N = np.asarray(labels_N)
  if not 0 < fraction < 1:
    raise UserError(f"config.data.dev_fraction must be in (0, 1) (got {fraction}); pass e.g. 0.1")
  rng = _rng(seed, _DEV_STREAM)
  dev = []
  for label in np.unique(labels_N):
    members = rng.permutation(np.flatnonzero(labels_N == label))
    dev.append(members[: min(int(round(fraction * len(members))), len(members) - 1)])
  dev_idx = np.sort(np.concatenate(dev))
  if len(dev_idx) == 0:
    raise UserError(f"a dev fraction of {fraction} of {len(labels_N)} training examples holds none out; pass a "
                    "larger --config.data.dev_fraction")
  return np.setdiff1d(np.arange(len(labels_N)), dev_idx), dev_idx


def num_folds(corpus: LabelledCorpus, data_config: ml_collections.ConfigDict) -> int:
  """config.data.folds, or where it is unset (None): 10 for a corpus with no test split (MR), 0 otherwise."""
  if data_config.folds is not None:
    return data_config.folds
  return 0 if "test" in corpus.splits else 10


def evaluation_folds(corpus: LabelledCorpus, data_config: ml_collections.ConfigDict) -> list[Fold]:
  """The runs a corpus asks for. Folds 0: one run on the corpus's own test split. Folds k: k runs, fold f tested
  on the f-th of `stratified_folds(train labels, k, split_seed)`. Each run's dev split is the corpus's own, or
  `hold_out_dev(its train, dev_fraction, split_seed + f)` (run f counted from 0)."""
  k = num_folds(corpus, data_config)
  seed, fraction = data_config.split_seed, data_config.dev_fraction
  if k == 0:
    if "test" not in corpus.splits:
      raise UserError(f"corpus {corpus.name!r} has no test split; pass --config.data.folds=10 for 10-fold "
                      "cross-validation")
    runs = [("test", corpus.splits["train"], corpus.splits["test"])]
  else:
    if "test" in corpus.splits:
      raise UserError(f"corpus {corpus.name!r} has its own test split, so it is not cross-validated; pass "
                      "--config.data.folds=0")
    train = corpus.splits["train"]
    runs = [(f"fold {f + 1}/{k}", train.subset(train_idx), train.subset(test_idx))
            for f, (train_idx, test_idx) in enumerate(stratified_folds(train.labels_N, k, seed))]
  folds = []
  for f, (name, train, test) in enumerate(runs):
    dev = corpus.splits.get("dev")
    if dev is None:
      train_idx, dev_idx = hold_out_dev(train.labels_N, fraction, seed + f)
      train, dev = train.subset(train_idx), train.subset(dev_idx)
    folds.append(Fold(name, train, dev, test))
  return folds


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))
