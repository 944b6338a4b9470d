"""The model families by config.model.kind. A new family is a module implementing
interface.LanguageModel and one entry here (and, if PyTorch has it, one in convert.CONVERTERS)."""

from __future__ import annotations

import dataclasses

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


# config.model fields that the trainer reads for every family; a family's own fields are its dataclass fields.
SHARED_FIELDS = frozenset({"kind", "pretrained_embeddings", "freeze_embeddings"})


def family_fields(chosen: type[LanguageModel]) -> frozenset[str]:
  """The config.model fields a family reads."""
  return SHARED_FIELDS | {f.name for f in dataclasses.fields(chosen) if f.name != "vocab_size"}


def validate(model_config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
  """The family's own checks, and no field it does not read set away from its default (`defaults`): such a
  field would be ignored in silence (wdrop on a Transformer, nhead on an RNN)."""
  chosen = family(model_config)
  used = family_fields(chosen)
  for name in sorted(model_config.keys()):
    if name not in used and model_config[name] != defaults[name]:
      owners = [kind for kind, other in FAMILIES.items() if name in family_fields(other)]
      raise UserError(f"config.model.{name} is not used by the {chosen.kind} family (it is "
                      f"{' and '.join(owners)}'s); drop it, or pass --config.model.kind={owners[0]}")
  chosen.validate_config(model_config)
  precision.validate(model_config.matmul_dtype)


def model_from_config(model_config: ml_collections.ConfigDict, vocab_size: int) -> LanguageModel:
  return family(model_config).from_config(model_config, vocab_size)
