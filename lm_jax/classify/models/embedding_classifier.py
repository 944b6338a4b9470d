"""The embedding classifiers (Kim's CNN, the recurrent and CNN -> RNN classifiers): embed -> features -> dropout
-> head, where only `features` is a family's own:
- embed: `embedding` [V, E] rows of the tokens, and with `embeddings='multichannel'` the frozen
  `embedding_static` rows beside them (Kim's two channels: the input has 2E features, so each filter or input
  projection has its own weights per channel, summed into its output, as a 2-channel convolution). Padded
  positions embed to zero vectors, whatever their token id: Kim's zero padding row, without a row to keep.
- features: the family's [B, D] summary of the real tokens (`mask_BxT` True; the batching pads on the right).
- dropout on that vector, as Kim's code does it: in training each feature is kept or zeroed (no 1/(1-p)
  scaling), in evaluation it is scaled by 1-p (Kim scales the output weight by 1-p; the product is the same).
  So `max_norm` bounds the weight Kim bounds.
- head: an optional hidden layer (`hidden` units, `hidden_activation`), then a linear layer to the classes.
  Weights are [in, out] (Kim's layout); max-norm rescales each output unit's column of every head weight to
  an L2 norm <= max_norm (Kim's sgd_updates_adadelta: norms over axis 0, scale min(norm, s) / (1e-7 + norm)).

Embedding variants (Kim 2014): 'rand' (random, trained), 'static' (pretrained, frozen), 'non-static'
(pretrained, trained), 'multichannel' (two copies of the pretrained vectors, the static one frozen). The
vectors come from config.model.pretrained_embeddings through `load_pretrained` (lm_jax/pretrained.py); words
the file lacks keep their U[-init_range, init_range] rows, Kim's rule for unknown words.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax import pretrained
from lm_jax.classify.models.interface import Classifier, Params, uniform
from lm_jax.errors import UserError

EMBEDDINGS = ("rand", "static", "non-static", "multichannel")
ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}
MAX_NORM_EPS = 1e-7  # Kim's


@dataclasses.dataclass(frozen=True)
class EmbeddingClassifier(Classifier):
  """Embed -> features -> Kim's dropout -> head (module docstring); subclasses add their fields and `features`."""

  # The [V, E] matrix that pretrained vectors fill (pretrained.load_into reads this name).
  embedding_param: ClassVar[str] = "embedding"
  static_channel_param: ClassVar[str] = "embedding_static"  # multichannel's frozen copy

  emsize: int = 300
  embeddings: str = "rand"        # one of EMBEDDINGS
  init_range: float = 0.25        # embedding rows ~ U(-init_range, init_range) (Kim's unknown words)
  dropout: float = 0.0            # on the features vector, Kim's way (module docstring)
  hidden: int = 0                 # units of a hidden layer in the head; 0: the features feed the output layer
  hidden_activation: str = "sigmoid"  # one of ACTIVATIONS
  max_norm: float = 0.0           # > 0: each head weight column rescaled to L2 norm <= max_norm after updates

  # ---- what a family adds

  @abc.abstractmethod
  def describe_features(self) -> str:
    """The family's part of `describe`, e.g. 'cnn 3,4,5 x 100 maps'."""

  @property
  @abc.abstractmethod
  def features_size(self) -> int:
    """D of `features`."""

  @abc.abstractmethod
  def init_features(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The family's own parameters (float32), drawn from `rng`."""

  @abc.abstractmethod
  def features(self, params: Params, x_BxTxI: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    """[B, D] from the embedded tokens (zero vectors at padding) and the mask of real tokens."""

  def validate(self) -> None:
    super().validate()
    if self.emsize <= 0:
      raise UserError(f"config.model.emsize must be > 0 (got {self.emsize}); pass e.g. --config.model.emsize=300")
    if self.embeddings not in EMBEDDINGS:
      raise UserError(f"unknown config.model.embeddings {self.embeddings!r}; use one of {', '.join(EMBEDDINGS)}")
    if not 0.0 <= self.dropout < 1.0:
      raise UserError(f"config.model.dropout must be in [0, 1) (got {self.dropout}); pass e.g. 0.5")
    if self.init_range <= 0:
      raise UserError(f"config.model.init_range must be > 0 (got {self.init_range}); pass e.g. 0.25")
    if self.hidden < 0:
      raise UserError(f"config.model.hidden must be >= 0 (got {self.hidden}); 0 for no hidden layer")
    if self.hidden_activation not in ACTIVATIONS:
      raise UserError(f"unknown config.model.hidden_activation {self.hidden_activation!r}; use one of "
                      f"{', '.join(ACTIVATIONS)}")
    if self.max_norm < 0:
      raise UserError(f"config.model.max_norm must be >= 0 (got {self.max_norm}); 0 for none, Kim's is 3")

  # ---- construction and checks

  @classmethod
  def validate_config(cls, model_config: ml_collections.ConfigDict) -> None:
    """Also refuses embeddings that do not fit config.model.pretrained_embeddings (Kim's 'rand' has no file; the
    other variants need one)."""
    super().validate_config(model_config)
    model = cls.from_fields(model_config, vocab_size=1, num_classes=2)
    path = model_config.get("pretrained_embeddings", "")
    if model.embeddings == "rand" and path:
      raise UserError("config.model.pretrained_embeddings is set but config.model.embeddings is 'rand'; pass "
                      "--config.model.embeddings=non-static (or static, multichannel), or drop the file")
    if model.embeddings != "rand" and not path:
      raise UserError(f"config.model.embeddings={model.embeddings!r} starts from pretrained vectors; pass "
                      "--config.model.pretrained_embeddings=FILE, or --config.model.embeddings=rand")

  def describe(self) -> str:
    head = f", hidden {self.hidden} {self.hidden_activation}" if self.hidden else ""
    norm = f", max-norm {self.max_norm:g}" if self.max_norm else ""
    return (f"{self.describe_features()}, {self.embeddings} embeddings {self.emsize}, dropout {self.dropout:g}"
            f"{head}{norm}, {self.num_classes} classes")

  # ---- parameters

  @property
  def channels(self) -> int:
    return 2 if self.embeddings == "multichannel" else 1

  @property
  def input_size(self) -> int:
    """Features per token that `features` reads: emsize per channel."""
    return self.channels * self.emsize

  def init_params(self, seed: int) -> Params:
    """Embedding U(-init_range, init_range) (multichannel: the static channel a copy of it); the family's
    parameters; Kim's head: a hidden layer as his HiddenLayer (ReLU: N(0, 0.01^2), else Glorot uniform), the
    output layer and every bias zero. Drawn with NumPy: jax.random's generator compiles for seconds per
    array on XLA:CPU, and initialising is no hot spot."""
    embedding_rng, features_rng, hidden_rng = (np.random.default_rng([seed, part]) for part in range(3))
    embedding_VxE = uniform(embedding_rng, (self.vocab_size, self.emsize), self.init_range)
    params = {self.embedding_param: embedding_VxE, **self.init_features(features_rng)}
    if self.channels == 2:
      params[self.static_channel_param] = embedding_VxE
    size = self.features_size
    if self.hidden:
      if self.hidden_activation == "relu":
        params["hidden_weight"] = (0.01 * hidden_rng.standard_normal((size, self.hidden))).astype(np.float32)
      else:
        params["hidden_weight"] = uniform(hidden_rng, (size, self.hidden), (6.0 / (size + self.hidden)) ** 0.5)
      params["hidden_bias"] = np.zeros(self.hidden, np.float32)
      size = self.hidden
    params["output_weight"] = np.zeros((size, self.num_classes), np.float32)
    params["output_bias"] = np.zeros(self.num_classes, np.float32)
    return {name: jnp.asarray(value) for name, value in params.items()}

  def initial_params(self, params: Params, vocab_words: Sequence[str],
                     model_config: ml_collections.ConfigDict) -> tuple[Params, str | None]:
    """The pretrained vectors of config.model.pretrained_embeddings, if any, and their coverage line."""
    path = model_config.get("pretrained_embeddings", "")
    if not path:
      return params, None
    params, matched = self.load_pretrained(params, vocab_words, path)
    return params, matched.coverage(len(vocab_words), path)

  def load_pretrained(self, params: Params, vocab_words: Sequence[str], path: str) -> tuple[Params, pretrained.Matched]:
    """`params` with the file's vectors in the embedding rows of the words they match (both channels), and
    the match (its `coverage` line is what a run prints)."""
    params, matched = pretrained.load_into(self, params, vocab_words, path)
    if self.channels == 2:
      # A copy: one buffer under two names could not be donated to a train step.
      params = {**params, self.static_channel_param: np.array(params[self.embedding_param])}
    return params, matched

  def layer_groups(self) -> tuple[tuple[str, ...], ...]:
    """The embedding (both channels); the family's own parameters: those outside recurrent layers (a convolution),
    then each recurrent layer `layer_K_*`; the head."""
    names = self.init_features(np.random.default_rng(0))
    layers = sorted({int(n.split("_")[1]) for n in names if re.match(r"layer_\d+_", n)})
    own = [tuple(n for n in names if not re.match(r"layer_\d+_", n))]
    own += [tuple(n for n in names if n.startswith(f"layer_{k}_")) for k in layers]
    head = ("hidden_weight", "hidden_bias")[:2 if self.hidden else 0] + ("output_weight", "output_bias")
    embedding = (self.embedding_param, self.static_channel_param)[:self.channels]
    return (embedding, *[group for group in own if group], head)

  def frozen_params(self) -> tuple[str, ...]:
    """Parameters that get no update: the embedding for 'static', the static channel for 'multichannel'."""
    return {"static": (self.embedding_param,), "multichannel": (self.static_channel_param,)}.get(self.embeddings, ())

  def constraints(self, params: Params) -> Params:
    """`params` after the update's constraints: Kim's max-norm on the head's weight columns, if max_norm > 0."""
    if not self.max_norm:
      return params

    def renorm(w_IxO: jax.Array) -> jax.Array:
      norms_O = jnp.sqrt(jnp.sum(w_IxO * w_IxO, axis=0))
      return w_IxO * (jnp.minimum(norms_O, self.max_norm) / (MAX_NORM_EPS + norms_O))

    return {name: renorm(value) if name in ("hidden_weight", "output_weight") else value
            for name, value in params.items()}

  # ---- the forward pass

  def embed(self, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    """[B, T, channels * E], zero vectors at padding."""
    names = (self.embedding_param, self.static_channel_param)[:self.channels]
    x_BxTxI = jnp.concatenate([params[name][tokens_BxT] for name in names], axis=-1)
    return x_BxTxI * mask_BxT[..., None].astype(x_BxTxI.dtype)

  def dropout_keep(self, rng: jax.Array, batch_size: int) -> jax.Array:
    """A training step's dropout mask [B, D]: 1 keeps a feature, 0 drops it (no scaling)."""
    return jax.random.bernoulli(rng, 1.0 - self.dropout, (batch_size, self.features_size)).astype(jnp.float32)

  def logits(self, params: Params, tokens_BxT: jax.Array, mask_BxT: jax.Array, *, train: bool = False,
             rng: jax.Array | None = None, keep_BxD: jax.Array | None = None) -> jax.Array:
    """Class logits [B, C] of the int32 tokens whose `mask_BxT` is True. `train` turns dropout on, its mask
    drawn from `rng` (`dropout_keep`) unless `keep_BxD` gives it (tests hand the same mask to PyTorch)."""
    z_BxD = self.features(params, self.embed(params, tokens_BxT, mask_BxT), mask_BxT)
    if self.dropout and train:
      z_BxD = z_BxD * (self.dropout_keep(rng, z_BxD.shape[0]) if keep_BxD is None else keep_BxD)
    elif self.dropout:
      z_BxD = z_BxD * (1.0 - self.dropout)
    if self.hidden:
      z_BxD = ACTIVATIONS[self.hidden_activation](z_BxD @ params["hidden_weight"] + params["hidden_bias"])
    return z_BxD @ params["output_weight"] + params["output_bias"]

