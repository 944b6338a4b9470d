"""The classifier families by config.model.kind. A new family is a module implementing
interface.Classifier and one entry here."""

from __future__ import annotations

import ml_collections

from lm_jax.classify.models.cnn_rnn import CNNRNNClassifier
from lm_jax.classify.models.interface import Classifier
from lm_jax.classify.models.kim_cnn import KimCNN
from lm_jax.classify.models.lm_encoder import LMEncoderClassifier
from lm_jax.classify.models.rnn import RNNClassifier
from lm_jax.errors import UserError

FAMILIES: dict[str, type[Classifier]] = {family.kind: family for family in (KimCNN, RNNClassifier, CNNRNNClassifier,
                                                                          LMEncoderClassifier)}


def family(model_config: ml_collections.ConfigDict) -> type[Classifier]:
  if model_config.kind not in FAMILIES:
    raise UserError(f"unknown classifier kind {model_config.kind!r}; use --config.model.kind= one of "
                    f"{', '.join(FAMILIES)}")
  return FAMILIES[model_config.kind]


def validate(model_config: ml_collections.ConfigDict) -> None:
  family(model_config).validate_config(model_config)


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int, num_classes: int) -> Classifier:
  return family(model_config).from_config(model_config, vocab_size, num_classes)


def default_model_config(kind: str) -> ml_collections.ConfigDict:
  """config.model for a family with its defaults (kind included): the starting point of a config file."""
  return ml_collections.ConfigDict(family(ml_collections.ConfigDict({"kind": kind})).from_fields(
      ml_collections.ConfigDict(), vocab_size=1, num_classes=2).config_fields())
