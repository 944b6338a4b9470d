"""lm-jax-classify-evaluate: score a trained classifier on a split of its corpus: accuracy, macro-F1 and the
confusion matrix (a table, and a PNG with --confusion_png).

  lm-jax-classify-evaluate --workdir=runs/classify [--split=test] [--confusion_png=confusion.png]

A cross-validated run has one model per fold: pass its fold folder (--workdir=runs/mr/fold-3), whose test split
is that fold's.
"""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import require_output_folder, run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of an lm-jax-classify run (or one of its fold-K folders).")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "dev", "test"], "The split to score.")
_PNG = flags.DEFINE_string("confusion_png", None, "Also draw the confusion matrix into this PNG (matplotlib).")


def main(argv: list[str]) -> None:
  if _PNG.value:
    require_output_folder("confusion_png", _PNG.value)
  from lm_jax.classify import metrics, trained
  from lm_jax.classify.data.config import load_corpus
  from lm_jax.classify.data.prepare import encode_fold
  from lm_jax.classify.data.splits import evaluation_folds

  run = trained.load(_WORKDIR.value)
  corpus = load_corpus(run.config.data)
  [fold] = [fold for fold in evaluation_folds(corpus, run.config.data) if fold.name == run.fold]
  split = getattr(fold, _SPLIT.value)
  if encode_fold(fold, run.config.data).vocab != run.vocab:
    raise UserError(f"the corpus at {run.config.data.path or run.config.data.source} is not the one {_WORKDIR.value} "
                    "was trained on (its vocabulary differs); restore that data")
  scores = metrics.scores(run.probabilities(split.texts), split.labels_N)
  where = "" if run.fold == "test" else f"{run.fold}, "  # a cross-validated run's fold
  print(f"| {where}{_SPLIT.value} split: {len(split.texts):,} examples | accuracy {scores.accuracy:.4f} | "
        f"macro-F1 {scores.macro_f1:.4f} | loss {scores.nll:.4f}")
  print(metrics.confusion_table(scores.confusion_CxC, run.classes))
  if _PNG.value:
    metrics.confusion_png(scores.confusion_CxC, run.classes, _PNG.value)
    print(f"| wrote {_PNG.value}")


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
