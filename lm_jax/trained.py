"""A trained model loaded back from a workdir's checkpoint, with its own vocabulary and config."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from lm_jax import checkpoints
from lm_jax.data.vocab import Vocabulary
from lm_jax.models.rnn_model import RNNModel, init_params, model_from_config
from lm_jax.steps import Params


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  model: RNNModel
  params: Params
  vocab: Vocabulary
  config: ml_collections.ConfigDict


def load(workdir: str, kind: str = checkpoints.BEST) -> TrainedModel:
  """The model, parameters, vocabulary and config of the newest `kind` checkpoint in `workdir`."""
  meta = checkpoints.restore_meta(workdir, kind)
  config = ml_collections.ConfigDict(meta["config"])
  vocab = Vocabulary(meta["vocab"])
  model = model_from_config(config.model, len(vocab))
  like_params = jax.eval_shape(lambda: init_params(model, 0, 1))
  state, _ = checkpoints.restore(workdir, kind, {"params": like_params})
  return TrainedModel(model, state["params"], vocab, config)
