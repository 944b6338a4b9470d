"""A labelled corpus: texts and integer labels per split, the class names, and (synthetic only) the exact
Bayes accuracy. Every reader returns one; nothing here knows a file format."""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from lm_jax.errors import UserError

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
  texts: list[str]        # raw text after the reader's own clean-up (IMDB: `<br />` gone); not tokenised
  labels_N: np.ndarray    # int32 class ids, indices into LabelledCorpus.classes

  def __len__(self) -> int:
    return len(self.texts)

  def subset(self, indices: Sequence[int] | np.ndarray) -> "LabelledSplit":
    return LabelledSplit([self.texts[i] for i in indices], self.labels_N[np.asarray(indices, dtype=np.int64)])


@dataclasses.dataclass(frozen=True)
class LabelledCorpus:
  name: str
  splits: dict[str, LabelledSplit]      # those the corpus has, of 'train', 'dev', 'test'
  classes: tuple[str, ...]              # class id -> name
  bayes_accuracy: dict[str, float] | None = None  # split -> the Bayes classifier's exact expected accuracy


def class_ids(labels: Sequence[str], classes: Sequence[str], where: Sequence[str], fix: str) -> np.ndarray:
  """Each label's index in `classes` as int32; a label outside them is a UserError naming where it is."""
  index = {name: i for i, name in enumerate(classes)}
  ids = np.empty(len(labels), np.int32)
  for i, label in enumerate(labels):
    if label not in index:
      raise UserError(f"{where[i]}: label {label!r} is not one of the classes ({_listed(classes)}); {fix}")
    ids[i] = index[label]
  return ids


def found_classes(labels: Sequence[str]) -> tuple[str, ...]:
  """The distinct labels in natural order: numerically when all are integers, else alphabetically."""
  distinct = set(labels)
  if all(re.fullmatch(r"-?\d+", label) for label in distinct):
    return tuple(sorted(distinct, key=int))
  return tuple(sorted(distinct))


def declared_classes(text: str) -> tuple[str, ...] | None:
  """`config.data.classes` ('neg,pos'): the declared label set in id order, or None when empty."""
  names = tuple(name.strip() for name in text.split(",")) if text.strip() else None
  if names is not None and (not all(names) or len(set(names)) != len(names)):
    raise UserError(f"config.data.classes {text!r} must list distinct non-empty labels separated by commas; "
                    "fix the list (e.g. --config.data.classes=neg,pos)")
  return names


def labelled_corpus(name: str, examples: dict[str, tuple[list[str], list[str], list[str]]],
                    classes: Sequence[str] | None, fix: str) -> LabelledCorpus:
  """A corpus from {split: (texts, labels, where)} with string labels. `classes`: the declared label set (a
  label outside it is refused); None: the training split's labels are the classes, and a dev/test label the
  training split lacks is refused."""
  if classes is None:
    classes = found_classes(examples["train"][1])
    fix = "every dev/test label must occur in the training split"
  splits = {split: LabelledSplit(texts, class_ids(labels, classes, where, fix))
            for split, (texts, labels, where) in examples.items()}
  return LabelledCorpus(name=name, splits=splits, classes=tuple(classes))


def require_every_class(corpus: LabelledCorpus, what: str) -> None:
  """A declared class with no training example is refused: the class file or folder is empty or missing."""
  counts = np.bincount(corpus.splits["train"].labels_N, minlength=len(corpus.classes))
  empty = [name for name, count in zip(corpus.classes, counts) if count == 0]
  if empty:
    raise UserError(f"{what}: class {empty[0]!r} has no training examples; give it examples or leave it out of "
                    "the classes")


def _listed(classes: Sequence[str]) -> str:
  shown = ", ".join(classes[:12])
  return shown + (f", ... ({len(classes)} in all)" if len(classes) > 12 else "")
