"""A language model's encoder as a classifier (config.model.kind = "lm_encoder"; ULMFiT, Howard & Ruder 2018):
`encoder_from` names an lm-jax-train workdir of the rnn family (LSTM, GRU, AWD-LSTM with its dropouts), whose best
model's embedding and recurrent layers read the text, with that run's vocabulary (unknown words are its `<unk>`).
The top layer's outputs over each document's last `max_len` tokens (bpt3c.py: longer documents run in chunks of
`bptt` with the state carried) are concat-pooled, [last, max, mean] over the real tokens (pooling.concat_pool), then:

  dropout(`dropout`) -> linear 3H -> `hidden` -> ReLU -> dropout(`head_dropout`) -> linear -> classes

as fastai's PoolingLinearClassifier (its default 50 units and dropouts 0.4, 0.1), without its BatchNorm layers: the
recipe trains without them and the ablation has not been measured (docs/classification.md). Dropouts are inverted
(kept values scaled by 1/(1-p)), as torch's. `hidden` 0: the pooled vector feeds the output layer.

Parameters: the LM's own names for the encoder (`embedding`, `layer_K_w_ih`, ...: lm_jax/models/rnn_model.py), and
`hidden_weight` [3H, hidden], `hidden_bias`, `output_weight` [hidden, C], `output_bias` (torch's nn.Linear init,
U(-1/sqrt(in), 1/sqrt(in))). The encoder is the LM's computation itself: its `features` on the LM's parameters (the
decoder, which nothing here reads, gets zeros of its shape). A fresh run starts from the LM run's best checkpoint
(checked against its checksums), or with `from_scratch` from the LM's own init with the same seed: the ablation
without pretraining. Layer groups: the embedding, each recurrent layer, the head. The LM run must stay where it is:
the classifier reads the LM's architecture and vocabulary from it whenever it is built (training, evaluation,
prediction).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax import checkpoints, config as lm_config, trained
from lm_jax.classify.data.prepare import EncodedFold, encode_fold
from lm_jax.classify.data.splits import Fold
from lm_jax.classify.models.bpt3c import tail_outputs
from lm_jax.classify.models.interface import Classifier, Params, uniform
from lm_jax.classify.models.pooling import concat_pool
from lm_jax.data.vocab import Vocabulary
from lm_jax.errors import UserError
from lm_jax.models.registry import model_from_config
from lm_jax.models.rnn_model import RNNModel

DECODER_PARAMS = ("decoder_weight", "decoder_bias")
DROPOUTS = ("dropout", "dropouti", "dropouth", "dropoute", "wdrop")  # the LM's, scaled by encoder_dropout_scale


@dataclasses.dataclass(frozen=True)
class LMEncoderClassifier(Classifier):
  """An LM run's encoder, concat pooling and fastai's head; fields as config.model's."""

  kind = "lm_encoder"

  encoder_from: str = ""          # an lm-jax-train workdir (rnn family): its best model and its vocabulary
  from_scratch: bool = False      # True: that LM's architecture and vocabulary from its own init (no pretraining)
  encoder_dropout_scale: float = 1.0  # multiplies each of the LM's dropouts (fastai's drop_mult)
  bptt: int = 70                  # BPT3C's chunk length (steps)
  max_len: int = 1400             # tokens at each document's end that are pooled and get a gradient
  dropout: float = 0.4            # on the pooled [last, max, mean] vector
  hidden: int = 50                # units of the head's ReLU layer; 0: none
  head_dropout: float = 0.1       # before the output layer (with a hidden layer)
  min_coverage: float = 0.5       # a training split with fewer of its tokens in the LM's vocabulary is refused
  # The LM read from encoder_from (not a config field: derived from it).
  encoder: RNNModel | None = dataclasses.field(default=None, metadata={"derived": True})

  @classmethod
  def from_config(cls, model_config: ml_collections.ConfigDict, vocab_size: int, num_classes: int) -> Classifier:
    """Reads the LM run's architecture (refusing what cannot serve: validation reads no file, setup does)."""
    model = cls.from_fields(model_config, vocab_size, num_classes)
    model.validate()
    meta = _run_meta(model.encoder_from)
    lm = model_from_config(lm_config.from_saved(meta["config"]).model, len(meta["vocab"]))
    scaled = {name: getattr(lm, name) * model.encoder_dropout_scale for name in DROPOUTS}
    too_high = [name for name, p in scaled.items() if p >= 1.0]
    if too_high:
      raise UserError(f"config.model.encoder_dropout_scale={model.encoder_dropout_scale} puts the language model's "
                      f"{too_high[0]} at {scaled[too_high[0]]:g}, outside [0, 1); pass a smaller scale")
    return dataclasses.replace(model, encoder=dataclasses.replace(lm, rnn_backend="scan", **scaled))

  @classmethod
  def validate_config(cls, model_config: ml_collections.ConfigDict) -> None:
    if model_config.get("pretrained_embeddings", ""):
      raise UserError("config.model.pretrained_embeddings does not apply to lm_encoder: its embedding is the language "
                      "model's (config.model.encoder_from); drop the file")
    super().validate_config(model_config)

  def validate(self) -> None:
    super().validate()
    for name in ("bptt", "max_len"):
      if getattr(self, name) < 1:
        raise UserError(f"config.model.{name} must be >= 1 (got {getattr(self, name)}); pass e.g. "
                        f"--config.model.{name}={getattr(type(self), name)}")
    for name in ("dropout", "head_dropout"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise UserError(f"config.model.{name} must be in [0, 1) (got {getattr(self, name)}); pass e.g. 0.1")
    if self.hidden < 0:
      raise UserError(f"config.model.hidden must be >= 0 (got {self.hidden}); 0 for no hidden layer, fastai's is 50")
    if not 0.0 <= self.min_coverage <= 1.0:
      raise UserError(f"config.model.min_coverage must be in [0, 1] (got {self.min_coverage}); pass e.g. 0.5")
    if self.encoder_dropout_scale < 0:
      raise UserError(f"config.model.encoder_dropout_scale must be >= 0 (got {self.encoder_dropout_scale}); 1 keeps "
                      "the language model's dropouts")

  @classmethod
  def encode_fold(cls, model_config: ml_collections.ConfigDict, fold: Fold,
                  data_config: ml_collections.ConfigDict) -> EncodedFold:
    """The fold in the LM's vocabulary; refused when too few of its training tokens are in it."""
    path = model_config.encoder_from
    data = encode_fold(fold, data_config, Vocabulary(_run_meta(path)["vocab"]))
    known = data.known_fraction()
    if known < model_config.min_coverage:
      raise UserError(f"only {100 * known:.1f}% of the training split's tokens are in the vocabulary of the language "
                      f"model in {path} (config.model.min_coverage {100 * model_config.min_coverage:g}%): the rest "
                      "would all read as <unk>; fine-tune that LM on this corpus's text first (lm-jax-classify-corpus, "
                      "then lm-jax-train --config.finetune_from), or tokenise as it was trained (config.data.clean, "
                      "config.data.lowercase)")
    return data

  def describe(self) -> str:
    start = "its architecture, from scratch" if self.from_scratch else "its best model"
    head = f"dropout {self.dropout:g}, hidden {self.hidden} relu, dropout {self.head_dropout:g}" if self.hidden else (
        f"dropout {self.dropout:g}")
    return (f"lm_encoder {self.encoder.describe()} from {self.encoder_from} ({start}), concat pooling over the last "
            f"{self.max_len} tokens (BPT3C chunks of {self.bptt}), {head}, {self.num_classes} classes")

  # ---- parameters

  @property
  def encoder_params(self) -> tuple[str, ...]:
    return tuple(name for name in _shapes(self.encoder) if name not in DECODER_PARAMS)

  def init_params(self, seed: int) -> Params:
    """The encoder: the LM's own init from `seed`, or (pretrained) zeros that `initial_params` replaces. The head:
    torch's nn.Linear init, drawn with NumPy from `seed`."""
    if self.from_scratch:
      params = {name: value for name, value in self.encoder.init_params(seed).items() if name not in DECODER_PARAMS}
    else:
      shapes = _shapes(self.encoder)
      params = {name: jnp.zeros(shapes[name].shape, shapes[name].dtype) for name in self.encoder_params}
    rng = np.random.default_rng([seed, 3])
    sizes = (3 * self.encoder.sizes[-1],) + ((self.hidden,) if self.hidden else ()) + (self.num_classes,)
    for name, (size_in, size_out) in zip(("hidden", "output")[-len(sizes) + 1:], zip(sizes, sizes[1:])):
      params[f"{name}_weight"] = uniform(rng, (size_in, size_out), size_in ** -0.5)
      params[f"{name}_bias"] = uniform(rng, (size_out,), size_in ** -0.5)
    return {name: jnp.asarray(value) for name, value in params.items()}

  def initial_params(self, params: Params, vocab_words: Sequence[str],
                     model_config: ml_collections.ConfigDict) -> tuple[Params, str | None]:
    """The LM run's best parameters in the encoder's place (from_scratch: left as initialised)."""
    if self.from_scratch:
      return params, f"| encoder: {self.encoder_from}'s architecture and vocabulary, initialised from the seed"
    lm = trained.load(self.encoder_from)
    if tuple(lm.vocab.words) != tuple(vocab_words):
      raise UserError(f"the language model in {self.encoder_from} changed since its vocabulary was read; run again")
    params = {**params, **{name: jnp.asarray(lm.params[name]) for name in self.encoder_params}}
    return params, f"| encoder: the best model of {self.encoder_from} ({len(vocab_words):,} words)"

  def layer_groups(self) -> tuple[tuple[str, ...], ...]:
    layers = [tuple(n for n in self.encoder_params if n.startswith(f"layer_{k}_")) for k in range(self.encoder.nlayers)]
    head = ("hidden_weight", "hidden_bias")[:2 if self.hidden else 0] + ("output_weight", "output_bias")
    return (("embedding",), *layers, head)

  # ---- the forward pass

  def pooled(self, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array, *, train: bool = False,
             rng: jax.Array | None = None) -> jax.Array:
    """Concat pooling [B, 3H] of the encoder's top-layer outputs over each row's last max_len real tokens."""
    shapes = _shapes(self.encoder)
    lm_params = {**params, **{name: jnp.zeros(shapes[name].shape, shapes[name].dtype) for name in DECODER_PARAMS
                              if name in shapes}}
    h_BxLxH, mask_BxL = tail_outputs(self.encoder, lm_params, tokens_BxT, mask_BxT, bptt=self.bptt,
                                     max_len=self.max_len, train=train, rng=rng)
    return concat_pool(h_BxLxH, mask_BxL)

  def logits(self, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array, *, train: bool = False,
             rng: jax.Array | None = None) -> jax.Array:
    keys = jax.random.split(rng, 3) if train else [None] * 3
    z_BxD = _dropout(self.pooled(params, tokens_BxT, mask_BxT, train=train, rng=keys[0]), self.dropout, keys[1])
    if self.hidden:
      z_BxD = jax.nn.relu(z_BxD @ params["hidden_weight"] + params["hidden_bias"])
      z_BxD = _dropout(z_BxD, self.head_dropout, keys[2])
    return z_BxD @ params["output_weight"] + params["output_bias"]


@functools.cache
def _shapes(lm: RNNModel) -> dict[str, jax.ShapeDtypeStruct]:
  """The LM's parameter shapes, by name."""
  return dict(jax.eval_shape(lm.init_params, 0))


def _dropout(x: jax.Array, p: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout in training (`rng` given), the identity in evaluation."""
  if rng is None or not p:
    return x
  return x * jax.random.bernoulli(rng, 1.0 - p, x.shape).astype(x.dtype) / (1.0 - p)


def _run_meta(path: str) -> dict:
  """The best checkpoint's metadata (config, vocabulary) of the rnn-family LM run in `path`; only JSON is read."""
  if not path:
    raise UserError("config.model.encoder_from is empty; pass --config.model.encoder_from=WORKDIR, the workdir of an "
                    "lm-jax-train run (LSTM, GRU or AWD-LSTM)")
  if not os.path.isdir(path):
    raise UserError(f"config.model.encoder_from={path} is not a directory; pass the workdir of an lm-jax-train run")
  if checkpoints.latest_step(path, checkpoints.BEST) is None:
    raise UserError(f"config.model.encoder_from={path} holds no trained model (no best checkpoint in "
                    f"{checkpoints.checkpoint_dir(path, checkpoints.BEST)}); pass the workdir of an lm-jax-train run")
  meta = checkpoints.restore_meta(path, checkpoints.BEST)
  if "classes" in meta:
    raise UserError(f"config.model.encoder_from={path} holds a classifier; pass the workdir of an lm-jax-train run")
  kind = meta["config"].get("model", {}).get("kind", "rnn")
  if kind != "rnn":
    raise UserError(f"config.model.encoder_from={path} holds a {kind} language model; lm_encoder reads rnn-family "
                    "runs (LSTM, GRU, AWD-LSTM): pass the workdir of one")
  return meta
