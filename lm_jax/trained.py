"""A trained model loaded back from a workdir's checkpoint, with its own vocabulary and config."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from lm_jax import checkpoints
from lm_jax.config import from_saved
from lm_jax.data.vocab import Vocabulary
from lm_jax.models.interface import LanguageModel, Params
from lm_jax.models.registry import model_from_config


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  model: LanguageModel
  params: Params
  vocab: Vocabulary
  config: ml_collections.ConfigDict


def load(workdir: str, kind: str = checkpoints.BEST) -> TrainedModel:
  """The model, parameters, vocabulary and config of the newest `kind` checkpoint in `workdir`."""
  meta = checkpoints.restore_meta(workdir, kind)
  config = from_saved(meta["config"])
  vocab = Vocabulary(meta["vocab"])
  model = model_from_config(config.model, len(vocab))
  like_params = jax.eval_shape(lambda: model.init_params(0))
  state, _ = checkpoints.restore(workdir, kind, {"params": like_params})
  return TrainedModel(model, state["params"], vocab, config)
