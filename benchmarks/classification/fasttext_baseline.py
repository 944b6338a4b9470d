"""The fastText baseline (Joulin et al. 2016, Bag of Tricks for Efficient Text Classification): supervised fastText
with word bigrams and the paper's sentiment settings (10 hidden units, 5 epochs, learning rate chosen on the dev
split), trained on the same tokens as every other model. An optional extra (`pip install -e '.[classify-bench]'`)."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

import numpy as np

LABEL = "__label__"
SETTINGS = dict(dim=10, epoch=5, wordNgrams=2, minCount=1)  # the paper's (Section 3.1)


def fit(token_lists: Sequence[Sequence[str]], labels_N: np.ndarray, num_classes: int, lr: float) -> Any:
  """fastText's supervised model of the examples at learning rate `lr` (fastText reads its input from a file)."""
  del num_classes  # fastText learns the labels it reads
  import fasttext

  with tempfile.TemporaryDirectory(prefix="lm_jax_fasttext_") as directory:
    path = os.path.join(directory, "train.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(f"{LABEL}{label} {' '.join(tokens)}\n" for tokens, label in zip(token_lists, labels_N))
    return fasttext.train_supervised(input=path, lr=lr, thread=os.cpu_count(), verbose=0, **SETTINGS)


def predict(model: Any, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
  """The most probable class of each example (class 0 for a text with no tokens, which fastText gives no label)."""
  labels, _ = model.predict([" ".join(tokens) for tokens in token_lists], k=1)
  return np.array([int(predicted[0].removeprefix(LABEL)) if predicted else 0 for predicted in labels], np.int64)
