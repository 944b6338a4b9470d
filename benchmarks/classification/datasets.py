"""The corpora the benchmark reads and each (dataset, model)'s lm_jax config: Kim's CNN-rand recipe
(configs/classify_kim.py) for `cnn`, the brief's GRU and CNN -> RNN (classify_config('rnn'), ('cnn_rnn')) for
`gru` and `cnn_rnn`, and ULMFiT's ablation (configs/classify_ulmfit.py on the language models its three-step recipe
trains, docs/classification.md) for the `ulmfit*` rows, all on the same data fields, so every model and baseline
sees the same splits."""

from __future__ import annotations

import os

import ml_collections

from configs import classify_kim, classify_ulmfit
from lm_jax.classify.config import classify_config
from lm_jax.errors import UserError
from lm_jax.metrics import read_records

from benchmarks.classification.accuracy import training_seconds

# ULMFiT's ablation, a row per step of the recipe: benchmark name -> (the language model whose encoder it starts
# from, a folder under --ulmfit_dir; whether from that LM's architecture and vocabulary only, initialised from the
# seed; whether with the fine-tuning recipe: discriminative lrs, the slanted triangular lr, gradual unfreezing).
GENERAL_LM, TARGET_LM = "wt2", "{dataset}_lm"  # the recipe's step 1 and step 2 workdirs
ULMFIT_ROWS = {"ulmfit_scratch": (TARGET_LM, True, False), "ulmfit_wt2": (GENERAL_LM, False, False),
               "ulmfit_lm": (TARGET_LM, False, False), "ulmfit": (TARGET_LM, False, True)}
# benchmark name -> config.model.kind
MODELS = {"cnn": "cnn", "gru": "rnn", "cnn_rnn": "cnn_rnn", **{name: "lm_encoder" for name in ULMFIT_ROWS}}
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


def language_model(dataset: str, model: str, ulmfit_dir: str) -> str:
  """The workdir of the language model a ULMFiT row's encoder comes from (absolute: the workers run in the
  repository root)."""
  return os.path.abspath(os.path.join(ulmfit_dir, ULMFIT_ROWS[model][0].format(dataset=dataset)))


def check_ulmfit(dataset: str, model: str, ulmfit_dir: str, quick: bool) -> None:
  """A ULMFiT row needs its corpus's recipe and its language model trained (steps 1 and 2 of the recipe)."""
  if quick:
    raise UserError(f"--quick has no language models for {model}; run it with models of "
                    f"{', '.join(m for m in MODELS if m not in ULMFIT_ROWS)}")
  if dataset not in classify_ulmfit.CORPORA:
    raise UserError(f"{model} has no recipe for {dataset} (configs/classify_ulmfit.py has "
                    f"{', '.join(classify_ulmfit.CORPORA)}); leave {dataset} or {model} out")
  lm = language_model(dataset, model, ulmfit_dir)
  if not os.path.isdir(os.path.join(lm, "checkpoints", "best")):
    raise UserError(f"{model} on {dataset} starts from the language model in {lm}, which holds no trained model; "
                    "train it with steps 1 and 2 of docs/classification.md's ULMFiT recipe, or pass --ulmfit_dir")


def language_model_stages(dataset: str, ulmfit_dir: str) -> list[dict]:
  """Steps 1 and 2 of the recipe for `dataset`'s ULMFiT rows, as their workdirs recorded them: epochs, training
  seconds (every epoch's, compilation included) and the best validation perplexity."""
  stages = []
  for stage, folder in (("1. general LM", GENERAL_LM), ("2. LM fine-tuned on the target text", TARGET_LM)):
    workdir = os.path.join(ulmfit_dir, folder.format(dataset=dataset))
    valid_ppls = [r["valid_ppl"] for r in read_records(workdir) if "epoch_seconds" in r]
    stages.append({"stage": stage, "workdir": workdir, "epochs": len(valid_ppls), "train_s": training_seconds(workdir),
                   "best_valid_ppl": min(valid_ppls, default=None)})
  return stages


def config_for(dataset: str, model: str, data_root: str, *, epochs: int | None = None, lr: float | None = None,
               quick: bool = False, ulmfit_dir: str = "runs/ulmfit") -> ml_collections.ConfigDict:
  """lm_jax's config of `model` on `dataset`. Kim's recipe cuts sentences to 100 tokens (none is that long); the
  brief's recurrent classifiers read 50 words (`flatten` reads exactly config.model.max_len), so their data is cut
  there; IMDB's documents go to 400 tokens for the CNN (config.data's default). The ULMFiT rows read
  configs/classify_ulmfit.py's, their encoder from `ulmfit_dir`'s language models."""
  if model not in MODELS:
    raise UserError(f"unknown model {model!r}; use some of {', '.join(MODELS)}")
  kind = MODELS[model]
  if kind == "cnn" and dataset in classify_kim.CORPORA:
    c = classify_kim.get_config(dataset)
  elif model in ULMFIT_ROWS:
    _, from_scratch, with_recipe = ULMFIT_ROWS[model]
    c = classify_ulmfit.get_config(dataset)
    c.model.update(encoder_from=language_model(dataset, model, ulmfit_dir), from_scratch=from_scratch)
    if not with_recipe:  # plain Adam on the whole model at a constant lr (the plateau schedule's lr_decay is 1)
      c.optim.update(layer_lr_decay=1.0, unfreeze_every=0, schedule="plateau")
  else:
    c = classify_config(kind)
    c.data.update(CORPORA[dataset])
  if kind in ("rnn", "cnn_rnn"):
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
  if lr is not None:
    c.optim.lr = lr
  return c

