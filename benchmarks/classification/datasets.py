"""The corpora the benchmark reads and each (dataset, model)'s lm_jax config: Kim's CNN-rand recipe
(configs/classify_kim.py) for `cnn`, the brief's GRU and CNN -> RNN (classify_config('rnn'), ('cnn_rnn')) for
`gru` and `cnn_rnn`, all on the same data fields, so every model and baseline sees the same splits."""

from __future__ import annotations

import os

import ml_collections

from configs import classify_kim
from lm_jax.classify.config import classify_config
from lm_jax.errors import UserError

MODELS = {"cnn": "cnn", "gru": "rnn", "cnn_rnn": "cnn_rnn"}  # benchmark name -> config.model.kind
# dataset -> config.data fields; a path is the folder's name under --data_root.
CORPORA = {**classify_kim.CORPORA, "imdb": dict(source="imdb", path="imdb"), "synthetic": dict(source="synthetic")}
DATASETS = tuple(CORPORA)
# --quick: tiny models, 2 epochs, 2 folds where a corpus is cross-validated, a small synthetic corpus.
QUICK_MODELS = {"cnn": dict(emsize=16, filter_maps=8), "rnn": dict(emsize=16, nhid=8, hidden=16),
                "cnn_rnn": dict(emsize=16, conv_maps=8, nhid=8, hidden=8)}
QUICK_SYNTHETIC = dict(train_size=300, dev_size=60, test_size=200)
QUICK_EPOCHS, QUICK_FOLDS = 1, 2
CROSS_VALIDATED = ("mr",)  # no test split: config.data.folds None gives 10-fold cross-validation


def corpus_path(dataset: str, data_root: str) -> str | None:
  """Where `dataset`'s files are (absolute: the workers run in the repository root); None for synthetic."""
  path = CORPORA[dataset].get("path")
  return os.path.abspath(os.path.join(data_root, os.path.basename(path))) if path else None


def check_present(dataset: str, data_root: str) -> None:
  path = corpus_path(dataset, data_root)
  if path is not None and not os.path.isdir(path):
    raise UserError(f"no {dataset} corpus: {path} is not a directory; pass --data_root=DIR holding "
                    f"{os.path.basename(path)}/ as ../shared/data/README.md lays it out, or leave {dataset} out of "
                    "--datasets")


def config_for(dataset: str, model: str, data_root: str, *, epochs: int | None = None,
               quick: bool = False) -> ml_collections.ConfigDict:
  """lm_jax's config of `model` on `dataset`. Kim's recipe cuts sentences to 100 tokens (none is that long); the
  brief's recurrent classifiers read 50 words (`flatten` reads exactly config.model.max_len), so their data is cut
  there; IMDB's documents go to 400 tokens for the CNN (config.data's default)."""
  if model not in MODELS:
    raise UserError(f"unknown model {model!r}; use some of {', '.join(MODELS)}")
  kind = MODELS[model]
  if kind == "cnn" and dataset in classify_kim.CORPORA:
    c = classify_kim.get_config(dataset)
  else:
    c = classify_config(kind)
    c.data.update(CORPORA[dataset])
  if kind != "cnn":
    c.data.max_len = c.model.max_len
  c.data.path = corpus_path(dataset, data_root) or ""
  if quick:
    c.model.update(QUICK_MODELS[kind])
    c.data.synthetic.update(QUICK_SYNTHETIC)
    if dataset in CROSS_VALIDATED:
      c.data.folds = QUICK_FOLDS
    c.epochs = QUICK_EPOCHS
  if epochs is not None:
    c.epochs = epochs
  return c

