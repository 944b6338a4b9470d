"""The NBSVM-style baseline (Wang & Manning 2012) with logistic regression in place of the SVM: binarised unigram
and bigram indicators x, scaled feature by feature by the log-count ratio

  r = log((p / |p|_1) / (q / |q|_1)),  p = alpha + sum of x over the class's examples, q = the same over the rest,

then scikit-learn's LogisticRegression (L2, liblinear's dual solver) on x * r. Two classes: one classifier (class 1
against class 0); more: one per class against the rest (its own r), the highest score wins."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

ALPHA = 1.0  # Wang & Manning's smoothing


def ngrams(tokens: Sequence[str]) -> list[str]:
  """The unigrams and bigrams of a token list (tokens hold no spaces)."""
  return list(tokens) + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def log_count_ratio(x_NxF: sparse.csr_matrix, positive_N: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
  """r [F] of binary features x for the examples where `positive_N` is True against the others."""
  p_F = alpha + np.asarray(x_NxF[positive_N].sum(axis=0)).ravel()
  q_F = alpha + np.asarray(x_NxF[~positive_N].sum(axis=0)).ravel()
  return np.log((p_F / p_F.sum()) / (q_F / q_F.sum()))


@dataclasses.dataclass(frozen=True)
class NBSVM:
  vectorizer: CountVectorizer
  ratios: list[np.ndarray]                   # r per classifier
  classifiers: list[LogisticRegression]      # one (2 classes) or one per class

  def scores(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """[N, C] decision scores; the prediction is their argmax."""
    x_NxF = self.vectorizer.transform(token_lists)
    s_NxK = np.stack([lr.decision_function(x_NxF @ sparse.diags(r_F))
                      for r_F, lr in zip(self.ratios, self.classifiers)], axis=1)
    return np.concatenate([-s_NxK, s_NxK], axis=1) if s_NxK.shape[1] == 1 else s_NxK

  def predict(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
    return np.argmax(self.scores(token_lists), axis=1)


def fit(token_lists: Sequence[Sequence[str]], labels_N: np.ndarray, num_classes: int, c: float) -> NBSVM:
  """NBSVM on the training examples, with LogisticRegression's inverse regularisation strength `c`."""
  vectorizer = CountVectorizer(analyzer=ngrams, binary=True, dtype=np.float64)
  x_NxF = vectorizer.fit_transform(token_lists).tocsr()
  ratios, classifiers = [], []
  for positive in ((1,) if num_classes == 2 else range(num_classes)):
    positive_N = np.asarray(labels_N) == positive
    r_F = log_count_ratio(x_NxF, positive_N)
    ratios.append(r_F)
    classifiers.append(LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=1000).fit(
        x_NxF @ sparse.diags(r_F), positive_N))
  return NBSVM(vectorizer, ratios, classifiers)


def predict(model: NBSVM, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
  return model.predict(token_lists)
