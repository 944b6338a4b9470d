"""A classifier's scores from its predicted probabilities: accuracy, macro-F1, the confusion matrix, mean NLL."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Scores(NamedTuple):
  accuracy: float
  macro_f1: float        # the mean over classes of each class's F1 (a class never predicted nor present: F1 0)
  nll: float             # mean -log p(true class)
  confusion_CxC: np.ndarray  # [true class, predicted class] counts

  @property
  def error(self) -> float:
    return 1.0 - self.accuracy


def scores(probs_NxC: np.ndarray, labels_N: np.ndarray) -> Scores:
  num_classes = probs_NxC.shape[1]
  predicted_N = np.argmax(probs_NxC, axis=1)
  confusion_CxC = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion_CxC, (labels_N, predicted_N), 1)
  true_positive_C = np.diag(confusion_CxC).astype(np.float64)
  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (row sum + column sum)
  denominator_C = confusion_CxC.sum(axis=0) + confusion_CxC.sum(axis=1)
  f1_C = np.divide(2 * true_positive_C, denominator_C, out=np.zeros(num_classes), where=denominator_C > 0)
  nll = float(-np.mean(np.log(np.maximum(probs_NxC[np.arange(len(labels_N)), labels_N], 1e-30))))
  return Scores(float(np.mean(predicted_N == labels_N)), float(np.mean(f1_C)), nll, confusion_CxC)


def confusion_table(confusion_CxC: np.ndarray, classes: tuple[str, ...]) -> str:
  """A markdown table: one row per true class, one column per predicted class."""
  lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
  lines += [f"| {name} | " + " | ".join(str(n) for n in row) + " |" for name, row in zip(classes, confusion_CxC)]
  return "\n".join(lines)


def confusion_png(confusion_CxC: np.ndarray, classes: tuple[str, ...], path: str) -> None:
  """The confusion matrix as a heat map with its counts (matplotlib, the test/bench extras)."""
  try:
    import matplotlib
  except ImportError:
    from lm_jax.errors import UserError
    raise UserError("--confusion_png needs matplotlib; pip install matplotlib, or drop the flag") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  size = max(4, 0.5 * len(classes) + 2)
  figure, axes = plt.subplots(figsize=(size, size))
  axes.imshow(confusion_CxC, cmap="Blues")
  axes.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true")
  axes.set_xticklabels(classes, rotation=90)
  axes.set_yticklabels(classes)
  if len(classes) <= 20:
    for (row, column), count in np.ndenumerate(confusion_CxC):
      axes.text(column, row, str(count), ha="center", va="center", fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
