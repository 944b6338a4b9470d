"""A trained classifier loaded back from a workdir's best checkpoint, with its vocabulary, classes and config, and
its class probabilities for new texts."""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from lm_jax import checkpoints
from lm_jax.classify import steps
from lm_jax.classify.config import from_saved
from lm_jax.classify.data.batching import bucket_lengths, bucketed_batches
from lm_jax.classify.data.prepare import encode_texts
from lm_jax.classify.models.interface import Classifier, Params
from lm_jax.classify.models.registry import model_from_config
from lm_jax.data.vocab import Vocabulary
from lm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
  model: Classifier
  params: Params
  vocab: Vocabulary
  classes: tuple[str, ...]
  config: ml_collections.ConfigDict
  fold: str

  def probabilities(self, texts: list[str]) -> np.ndarray:
    """[N, C] class probabilities of `texts`, read as the training data was (clean_str, case, max_len)."""
    ids, _ = encode_texts(texts, self.vocab, self.config.data)
    batches = bucketed_batches(ids, np.zeros(len(ids), np.int32), self.config.eval_batch_size,
                               bucket_lengths(self.config.data.max_len))
    return steps.probabilities(self.model, self.params, list(batches), len(ids))


def load(workdir: str) -> TrainedClassifier:
  """The best model of the classification run in `workdir` (a cross-validated run: of one of its fold-K folders)."""
  if os.path.isdir(os.path.join(workdir, "fold-1")) and not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise UserError(f"{workdir} holds a cross-validated run, one model per fold; pass one of its folders, e.g. "
                    f"--workdir={os.path.join(workdir, 'fold-1')}")
  meta = checkpoints.restore_meta(workdir, checkpoints.BEST)
  if "classes" not in meta:
    raise UserError(f"{workdir} holds a language model, not a classifier; pass the workdir of an lm-jax-classify run")
  config = from_saved(meta["config"])
  vocab, classes = Vocabulary(meta["vocab"]), tuple(meta["classes"])
  model = model_from_config(config.model, len(vocab), len(classes))
  state, _ = checkpoints.restore(workdir, checkpoints.BEST, {"params": jax.eval_shape(lambda: model.init_params(0))})
  return TrainedClassifier(model, state["params"], vocab, classes, config, meta["fold"])
