"""The classifier-family interface: what the classification loop, evaluation, prediction, checkpoints and
benchmarks see of a model, so that none of them branches on the family.

A family (config.model.kind) is a frozen dataclass (hashable: jit takes it as a static argument) whose fields
are its config.model fields plus `vocab_size` and `num_classes`, which the data decides (and any field marked
`derived`, which it computes from its config fields):

  data    = Family.encode_fold(config.model, fold, config.data)          # its vocabulary and the fold's ids
  model   = model_from_config(config.model, vocab_size, num_classes)     # registry.py
  params  = model.init_params(seed)                                       # a flat {name: array} dict
  params, note = model.initial_params(params, vocab_words, config.model)  # fresh runs: pretrained vectors or weights
  logits_BxC = model.logits(params, tokens_BxT, mask_BxT, train=..., rng=...)
  frozen  = model.frozen_params()          # names that never change (optim.make_optimizer's `frozen`)
  groups  = model.layer_groups()           # names per layer group, bottom first (lm_jax/finetuning.py)
  params  = model.constraints(params)      # after every update (Kim's max-norm; identity when max_norm = 0)

Most families are an `EmbeddingClassifier` (embedding_classifier.py: Kim's embed -> features -> dropout -> head);
the language-model encoder (lm_encoder.py) reads another run's vocabulary and weights.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Sequence

import jax
import ml_collections
import numpy as np

from lm_jax.classify.data.prepare import EncodedFold, encode_fold
from lm_jax.classify.data.splits import Fold
from lm_jax.errors import UserError

Params = dict[str, jax.Array]

# config.model fields the task reads beside the family's own (any other field is refused by validate_config).
TASK_FIELDS = ("kind", "pretrained_embeddings")


def uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
  """U(-bound, bound), float32."""
  return rng.uniform(-bound, bound, shape).astype(np.float32)


def _hashable(value: Any) -> Any:
  return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class Classifier(abc.ABC):
  """The contract every family meets; subclasses add their fields (all with defaults)."""

  kind: ClassVar[str]  # its config.model.kind

  vocab_size: int
  num_classes: int

  # ---- construction and checks

  @classmethod
  def config_names(cls) -> list[str]:
    """The family's config.model fields (kind aside)."""
    return [f.name for f in dataclasses.fields(cls)
            if f.name not in ("vocab_size", "num_classes") and not f.metadata.get("derived")]

  @classmethod
  def from_fields(cls, model_config: ml_collections.ConfigDict, vocab_size: int, num_classes: int) -> Classifier:
    """The model of config.model's fields alone (derived fields at their defaults; nothing is read); fields the config
    lacks keep their defaults."""
    return cls(vocab_size=vocab_size, num_classes=num_classes,
               **{name: _hashable(model_config[name]) for name in cls.config_names() if name in model_config})

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict, vocab_size: int, num_classes: int) -> Classifier:
    """The model config.model describes (a family with derived fields reads what they come from)."""
    return cls.from_fields(model_config, vocab_size, num_classes)

  @classmethod
  def validate_config(cls, model_config: ml_collections.ConfigDict) -> None:
    """Raises UserError for a field that is not this family's, or a bad value (reading no file)."""
    own = set(cls.config_names())
    for name in model_config:
      if name not in own and name not in TASK_FIELDS:
        raise UserError(f"config.model.{name} is not a field of the {cls.kind!r} classifier; drop it (its fields: "
                        f"{', '.join(sorted(own))})")
    cls.from_fields(model_config, vocab_size=1, num_classes=2).validate()

  def validate(self) -> None:
    """Raises UserError naming a bad field and the fix; a family extends it with its own checks."""
    if self.vocab_size <= 0:
      raise UserError(f"the vocabulary is empty (vocab_size {self.vocab_size}); the training split needs words")
    if self.num_classes < 2:
      raise UserError(f"a classifier needs at least 2 classes (the data has {self.num_classes})")

  def config_fields(self) -> dict[str, Any]:
    """config.model fields that rebuild this model with `from_config` (kind included)."""
    return {"kind": self.kind, **{name: getattr(self, name) for name in self.config_names()}}

  @classmethod
  def encode_fold(cls, model_config: ml_collections.ConfigDict, fold: Fold,
                  data_config: ml_collections.ConfigDict) -> EncodedFold:
    """The fold as this family reads it: by default, a vocabulary built from its training split."""
    return encode_fold(fold, data_config)

  # ---- what a family provides

  @abc.abstractmethod
  def describe(self) -> str:
    """A short description for log lines."""

  @abc.abstractmethod
  def init_params(self, seed: int) -> Params:
    """Fresh parameters from `seed`, a flat {name: array} dict (trained.py asks only for their shapes)."""

  def initial_params(self, params: Params, vocab_words: Sequence[str],
                     model_config: ml_collections.ConfigDict) -> tuple[Params, str | None]:
    """A fresh run's starting parameters from `init_params`' (pretrained vectors or weights), and a line saying
    what was loaded (None: nothing)."""
    return params, None

  @abc.abstractmethod
  def logits(self, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array, *, train: bool = False,
             rng: jax.Array | None = None) -> jax.Array:
    """Class logits [B, C] of the int32 tokens whose `mask_BxT` is True; `train` turns dropout on (from `rng`)."""

  @abc.abstractmethod
  def layer_groups(self) -> tuple[tuple[str, ...], ...]:
    """Parameter names per layer group, bottom first (the embedding first, the head last): what discriminative lrs
    and gradual unfreezing act on (lm_jax/finetuning.py)."""

  def frozen_params(self) -> tuple[str, ...]:
    """Parameters that never get an update."""
    return ()

  def constraints(self, params: Params) -> Params:
    """`params` after the update's constraints."""
    return params
