"""The model families by config.model.kind. A new family is a module implementing
interface.LanguageModel and one entry here (and, if PyTorch has it, one in convert.CONVERTERS)."""

from __future__ import annotations

import ml_collections

from lm_jax.errors import UserError
from lm_jax.models import precision
from lm_jax.models.interface import LanguageModel
from lm_jax.models.rnn_model import RNNModel
from lm_jax.models.transformer import TransformerModel

FAMILIES: dict[str, type[LanguageModel]] = {RNNModel.kind: RNNModel, TransformerModel.kind: TransformerModel}


def family(model_config: ml_collections.ConfigDict) -> type[LanguageModel]:
  if model_config.kind not in FAMILIES:
    raise UserError(f"unknown model kind {model_config.kind!r}; use --config.model.kind= one of {', '.join(FAMILIES)}")
  return FAMILIES[model_config.kind]


def validate(model_config: ml_collections.ConfigDict) -> None:
  family(model_config).validate_config(model_config)
  precision.validate(model_config.matmul_dtype)


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int) -> LanguageModel:
  return family(model_config).from_config(model_config, vocab_size)
