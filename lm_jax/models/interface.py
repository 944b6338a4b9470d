"""The model-family interface: what the trainer, evaluator, generator, checkpoints, converters and
benchmarks see of a model, so that none of them branches on the family.

A family (config.model.kind) is a frozen dataclass whose fields are its config.model fields (plus
`vocab_size`, which the data decides). It owns its parameters, its carried state, its features, its
logits and its NLL:

  params  = model.init_params(seed)
  carry   = model.init_carry(batch_size)          # the state at the start of an epoch or evaluation
  carry   = model.init_decoding_carry(batch_size, max_len)  # for feeding sequences piece by piece (generation)
  out     = model.features(params, tokens_TxB, carry, valid_T, train=..., rng=...)
  logits  = model.logits(params, out.features_TxBxH)
  nll_TxB = model.nll(params, out.features_TxBxH, targets_TxB)

Every leaf of the carry holds the batch on axis 0 (parallel.CARRY splits it over the devices) and has
no gradient path into earlier windows (the train step stops it). `out.aux` holds the activations
regularisers read (lm_jax/loss.py), by name.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import ml_collections

Params = Any   # a pytree of arrays
Carry = Any    # a pytree of [B, ...] arrays; () for a family that carries nothing


class ModelOutput(NamedTuple):
  features_TxBxH: jax.Array   # what the decoder reads
  carry: Carry                # the state after the window's valid steps
  aux: dict[str, jax.Array]   # activations by name, for regularisers and evaluation-time methods


class LanguageModel(abc.ABC):
  """A model family. Subclasses are frozen dataclasses (hashable: jit takes them as static arguments)."""

  kind: ClassVar[str]  # its config.model.kind
  # The name in params of the [V, E] input embedding matrix (row i: word i), which pretrained vectors fill,
  # freeze_embeddings freezes and lm-jax-embeddings reads.
  embedding_param: ClassVar[str]
  # The names `features` puts in ModelOutput.aux: what regularisers (lm_jax/loss.py REGULARISERS) may read.
  aux_outputs: ClassVar[frozenset[str]] = frozenset()
  vocab_size: int

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict, vocab_size: int) -> LanguageModel:
    """The model config.model describes (config validation refuses a field of another family set away from its
    default); a field the config lacks (a checkpoint's config written before the field existed) keeps its
    default."""
    names = [f.name for f in dataclasses.fields(cls) if f.name != "vocab_size" and f.name in model_config]
    return cls(vocab_size=vocab_size, **{name: model_config[name] for name in names})

  def config_fields(self) -> dict[str, Any]:
    """config.model fields that rebuild this model with `from_config` (kind included)."""
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "vocab_size"}
    return {"kind": self.kind, **fields}

  @classmethod
  @abc.abstractmethod
  def validate_config(cls, model_config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming a bad config.model field of this family and the fix."""

  @abc.abstractmethod
  def describe(self) -> str:
    """A short description for log lines, e.g. 'lstm 2x200, untied'."""

  @abc.abstractmethod
  def init_params(self, seed: int) -> Params:
    """Freshly initialised parameters from `seed` (the reference's init)."""

  @abc.abstractmethod
  def init_carry(self, batch_size: int) -> Carry:
    """The carried state at the start of each epoch and each evaluation."""

  def init_decoding_carry(self, batch_size: int, max_len: int) -> Carry:
    """The carry for feeding up to `max_len` tokens a few at a time (generation: the prompt, then one word
    per step), such that the features equal those of the whole sequence fed at once from `init_carry`. A
    recurrent family's state already does that; an attention family returns its key/value cache."""
    return self.init_carry(batch_size)

  @abc.abstractmethod
  def features(self, params: Params, tokens_TxB: jax.Array, carry: Carry, valid_T: jax.Array | None = None, *,
               train: bool = False, rng: jax.Array | None = None) -> ModelOutput:
    """The decoder's input per position, the new carry and the aux activations. `valid_T[t]` False marks
    padding steps past the window's length; `train` turns dropout on, drawn from `rng`."""

  @abc.abstractmethod
  def logits(self, params: Params, features_TxBxH: jax.Array) -> jax.Array:
    """Next-word logits [T, B, V]."""

  @abc.abstractmethod
  def nll(self, params: Params, features_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    """-log p(target) per position [T, B]: the loss's hot spot, free to fuse decoder and softmax."""
