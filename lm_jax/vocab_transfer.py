"""A trained language model's parameters carried over to another vocabulary, for fine-tuning a general model on a
target corpus whose vocabulary differs (ULMFiT's second step; lm-jax-train --config.finetune_from).

Every parameter with a vocabulary axis (the embedding, an untied decoder's weight, the decoder's bias, whatever the
family names them) gets the target vocabulary's rows: a word both vocabularies hold keeps its trained row, a new word
starts at the mean of the trained rows (fastai's and the ULMFiT scripts' rule). The vocabulary axes are found by
asking the family for its parameter shapes at two vocabulary sizes, so no family needs to list them.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from lm_jax.data.vocab import Vocabulary
from lm_jax.models.interface import LanguageModel, Params


def vocabulary_axes(model: LanguageModel) -> dict[str, int]:
  """{parameter name: its vocabulary axis}, for the parameters whose shape follows the vocabulary size."""
  shapes = [jax.eval_shape(dataclasses.replace(model, vocab_size=size).init_params, 0) for size in (7, 8)]
  axes = {}
  for name, small in shapes[0].items():
    changed = [axis for axis, (a, b) in enumerate(zip(small.shape, shapes[1][name].shape)) if a != b]
    if changed:
      axes[name] = changed[0]
  return axes


def transfer(model: LanguageModel, params: Params, source: Vocabulary, target: Vocabulary) -> tuple[Params, int]:
  """`params` of `model` (trained on `source`) with `target`'s rows on every vocabulary axis, and how many of the
  target's words the source holds."""
  rows_N = np.array([source.index.get(word, -1) for word in target.words])
  known_N = rows_N >= 0
  moved = {}
  for name, axis in vocabulary_axes(model).items():
    value = np.moveaxis(np.asarray(params[name]), axis, 0)
    rows = np.where(known_N.reshape((-1,) + (1,) * (value.ndim - 1)), value[np.maximum(rows_N, 0)], value.mean(axis=0))
    moved[name] = np.moveaxis(rows.astype(value.dtype), 0, axis)
  return {**params, **moved}, int(known_N.sum())
