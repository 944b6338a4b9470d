"""The RNN family (config.model.kind = "rnn"): embedding -> dropout -> stacked LSTM/GRU/RNN (dropout
between layers) -> dropout -> decoder: the reference's RNNModel, and with the AWD-LSTM regularisers
(salesforce/awd-lstm-lm) as named options.

Parameters mirror the reference's state_dict one to one (transposed to x @ W layout):
  embedding [V, E]                                    encoder.weight
  layer_k_w_ih [I_k, G*H_k], layer_k_w_hh [H_k, G*H_k]  rnn.weight_ih_lk.T, rnn.weight_hh_lk.T
  layer_k_b_ih [G*H_k], layer_k_b_hh [G*H_k]          rnn.bias_ih_lk, rnn.bias_hh_lk
  decoder_weight [V, H] (untied only)                 decoder.weight
  decoder_bias [V]                                    decoder.bias
The Mogrifier LSTM (cell mogrifier_lstm) adds each layer's layer_k_mogrify_* matrices and biases (mogrifier.py),
which no reference has.
Layer sizes are AWD-LSTM's: every layer has `nhid` units but the last has `emsize` when tied, so tying
works with nhid != emsize (with nhid == emsize, the word_language_model's equal layers). The carried
state is a tuple over layers of each layer's state tuple ([B, H_k] arrays: h, and c for the LSTM).

Dropout. `locked_dropout` False (the word_language_model): `dropout` on the embedding output, between
layers and on the output, a fresh mask per position. True (AWD-LSTM): `dropouti` on the embedding
output, `dropouth` between layers and `dropout` on the output, each one mask per column for the whole
window. `dropoute` drops whole rows of the embedding matrix for the window and `wdrop` drops entries of
every layer's hidden-to-hidden matrix for the window (DropConnect), in either mode. Kept values are
scaled by 1/(1-p); evaluation uses no dropout. The window's AWD masks come from `dropout_masks`, so that
a test can hand the same masks to a PyTorch reference.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from lm_jax.errors import UserError
from lm_jax.models import cudnn_lstm, mogrifier, precision
from lm_jax.models.cells import State
from lm_jax.models.interface import LanguageModel, ModelOutput, Params
from lm_jax.models.mogrifier import RNN_CELLS
from lm_jax.models.softmax_nll import decoder_nll

Carry = tuple[State, ...]  # one state tuple per layer
Masks = dict[str, jax.Array]


def uniform(scale: float) -> nn.initializers.Initializer:
  """U(-scale, scale), the reference's init."""

  def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


def scaled_identity(scale: float) -> nn.initializers.Initializer:
  """scale * I for a square matrix: IRNN's hidden-to-hidden init (Le et al., 2015)."""

  def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    del key
    return scale * jnp.eye(*shape, dtype=dtype)

  return init


RECURRENT_INITS = ("uniform", "identity")


def layer_sizes(nlayers: int, nhid: int, emsize: int, tied: bool) -> tuple[int, ...]:
  """Units per layer: `nhid`, the last `emsize` when tied (it feeds the tied decoder)."""
  return tuple(emsize if tied and k == nlayers - 1 else nhid for k in range(nlayers))


def _keep_mask(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
  """Bernoulli(1 - p) / (1 - p): a dropout mask with its scaling."""
  return jax.random.bernoulli(key, 1.0 - p, shape).astype(jnp.float32) / (1.0 - p)


class _Network(nn.Module):
  """The parameters and the forward pass; RNNModel below is what the rest of lm_jax calls."""

  vocab_size: int
  cell: str
  emsize: int
  sizes: tuple[int, ...]
  dropout: float
  locked_dropout: bool
  tied: bool
  init_range: float
  unroll: int
  recurrent_init: str
  recurrent_init_scale: float
  matmul_dtype: str
  rnn_backend: str
  mogrify_rounds: int
  mogrify_rank: int

  def setup(self):
    gates = RNN_CELLS[self.cell].num_gates
    inputs = (self.emsize,) + self.sizes[:-1]
    self.embedding_VxE = self.param("embedding", uniform(self.init_range), (self.vocab_size, self.emsize))
    layers = []
    for k, (size_in, size) in enumerate(zip(inputs, self.sizes)):
      torch_init = uniform(1.0 / size ** 0.5)  # torch.nn.LSTM/GRU/RNN's, per layer
      identity = self.recurrent_init == "identity"  # IRNN: W_hh = scale * I, both biases 0
      hidden_init = scaled_identity(self.recurrent_init_scale) if identity else torch_init
      bias_init = nn.initializers.zeros if identity else torch_init
      layers.append({"w_ih": self.param(f"layer_{k}_w_ih", torch_init, (size_in, gates * size)),
                     "w_hh": self.param(f"layer_{k}_w_hh", hidden_init, (size, gates * size)),
                     "b_ih": self.param(f"layer_{k}_b_ih", bias_init, (gates * size,)),
                     "b_hh": self.param(f"layer_{k}_b_hh", bias_init, (gates * size,))})
    self.decoder_weight_VxH = (self.embedding_VxE if self.tied else self.param(
        "decoder_weight", uniform(self.init_range), (self.vocab_size, self.sizes[-1])))
    self.decoder_bias_V = self.param("decoder_bias", nn.initializers.zeros, (self.vocab_size,))
    # Drawn last, so that every other parameter is the LSTM's from the same seed.
    if self.cell == mogrifier.NAME:
      for k, (size_in, size) in enumerate(zip(inputs, self.sizes)):
        for name, (shape, init) in mogrifier.parameters(self.mogrify_rounds, self.mogrify_rank, size_in, size).items():
          layers[k][name] = self.param(f"layer_{k}_{name}", init, shape)
    self.layers = layers
    # The word_language_model's dropout (a fresh mask per position); AWD's locked masks come in `masks`.
    self.drop = nn.Dropout(0.0 if self.locked_dropout else self.dropout)

  def __call__(self, tokens_TxB: jax.Array, carry: Carry) -> jax.Array:
    """Logits, so that `init` creates every parameter."""
    h_TxBxH, _, _ = self.features(tokens_TxB, carry, jnp.ones(tokens_TxB.shape[0], bool), False, {})
    return self.decode(h_TxBxH)

  def features(self, tokens_TxB: jax.Array, carry: Carry, valid_T: jax.Array, train: bool,
               masks: Masks) -> tuple[jax.Array, Carry, jax.Array]:
    """The dropped top-layer output, the new carry, and the top layer's raw output."""

    def drop(x_TxBxH: jax.Array, locked_mask: str) -> jax.Array:
      x_TxBxH = self.drop(x_TxBxH, deterministic=not train)
      return x_TxBxH * masks[locked_mask] if locked_mask in masks else x_TxBxH

    x = self.embedding_VxE[tokens_TxB]
    if "embedding_V" in masks:  # the rows of the words it drops, as AWD-LSTM's embedded_dropout
      x = x * masks["embedding_V"][tokens_TxB][..., None]
    x = drop(x, "input_BxE")
    new_carry = []
    cell = mogrifier.layer_cell(self.cell, self.mogrify_rounds)
    for k, weights in enumerate(self.layers):
      if f"w_hh_{k}" in masks:  # outside the layer's custom VJP: the mask's chain rule is plain autodiff
        weights = {**weights, "w_hh": weights["w_hh"] * masks[f"w_hh_{k}"]}
      run_layer = cudnn_lstm.LAYERS[self.rnn_backend]
      raw, layer_state = run_layer(cell, weights, x, carry[k], valid_T, self.unroll, self.matmul_dtype)
      x = drop(raw, f"hidden_{k}_BxH" if k < len(self.layers) - 1 else "output_BxH")
      new_carry.append(layer_state)
    return x, tuple(new_carry), raw

  def decode(self, h_TxBxH: jax.Array) -> jax.Array:
    # Written as W h: with h @ W^T, XLA:CPU copies W transposed (26 MB at WikiText-2 size) for every
    # single-row product, i.e. once per sampled word; W h reads W in place.
    return precision.einsum("vh,tbh->tbv", self.decoder_weight_VxH, h_TxBxH, self.matmul_dtype) + self.decoder_bias_V

  def nll(self, h_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    steps, batch, size = h_TxBxH.shape
    nll_N = decoder_nll(h_TxBxH.reshape(steps * batch, size), self.decoder_weight_VxH, self.decoder_bias_V,
                        targets_TxB.reshape(steps * batch), self.matmul_dtype)
    return nll_N.reshape(steps, batch)


@dataclasses.dataclass(frozen=True)
class RNNModel(LanguageModel):
  """The reference's RNNModel, with AWD-LSTM's regularisers; fields as config.model's."""

  kind = "rnn"
  embedding_param = "embedding"
  aux_outputs = frozenset({"top_raw_TxBxH"})

  vocab_size: int
  cell: str = "lstm"
  emsize: int = 200
  nhid: int = 200
  nlayers: int = 2
  dropout: float = 0.2
  tied: bool = False
  init_range: float = 0.1       # embedding and decoder weights ~ U(-init_range, init_range)
  unroll: int = 1               # lax.scan unroll of the recurrence's forward
  locked_dropout: bool = False  # AWD-LSTM's: one mask per column per window (then dropouti/dropouth apply)
  dropouti: float = 0.0         # locked dropout on the embedding output
  dropouth: float = 0.0         # locked dropout between layers
  dropoute: float = 0.0         # whole embedding rows (word types) dropped for the window
  wdrop: float = 0.0            # DropConnect on each layer's hidden-to-hidden matrix, per window
  recurrent_init: str = "uniform"   # 'identity': IRNN's W_hh = recurrent_init_scale * I, biases 0 (rnn_relu/rnn_tanh)
  recurrent_init_scale: float = 1.0
  matmul_dtype: str = "float32"  # "bfloat16": matmul inputs rounded to it, float32 accumulation (precision.py)
  rnn_backend: str = "scan"      # "cudnn": each LSTM layer one cuDNN kernel (cudnn_lstm.py; GPU, float32, no AWD masks)
  mogrify_rounds: int = mogrifier.DEFAULT_ROUNDS  # cell mogrifier_lstm: rounds of gating x and h (mogrifier.py)
  mogrify_rank: int = mogrifier.DEFAULT_RANK      # and the rank of their matrices; 0: full

  @property
  def sizes(self) -> tuple[int, ...]:
    return layer_sizes(self.nlayers, self.nhid, self.emsize, self.tied)

  @property
  def _network(self) -> _Network:
    return _Network(self.vocab_size, self.cell, self.emsize, self.sizes, self.dropout, self.locked_dropout,
                    self.tied, self.init_range, self.unroll, self.recurrent_init, self.recurrent_init_scale,
                    self.matmul_dtype, self.rnn_backend, self.mogrify_rounds, self.mogrify_rank)

  @classmethod
  def validate_config(cls, m: ml_collections.ConfigDict) -> None:
    if m.cell not in RNN_CELLS:
      raise UserError(f"unknown cell {m.cell!r}; use one of {', '.join(RNN_CELLS)}")
    for name in ("emsize", "nhid", "nlayers", "unroll"):
      if m[name] <= 0:
        raise UserError(f"config.model.{name} must be > 0 (got {m[name]}); pass --config.model.{name}=N")
    for name in ("dropout", "dropouti", "dropouth", "dropoute", "wdrop"):
      if not 0.0 <= m[name] < 1.0:
        raise UserError(f"config.model.{name} must be in [0, 1) (got {m[name]}); pass e.g. "
                        f"--config.model.{name}=0.2")
    for name in ("dropouti", "dropouth"):
      if m[name] and not m.locked_dropout:
        raise UserError(f"config.model.{name} is AWD-LSTM's locked dropout; pass --config.model.locked_dropout=True "
                        f"with it, or --config.model.{name}=0")
    if m.init_range <= 0:
      raise UserError(f"config.model.init_range must be > 0 (got {m.init_range}); pass e.g. 0.1")
    if m.recurrent_init not in RECURRENT_INITS:
      raise UserError(f"unknown config.model.recurrent_init {m.recurrent_init!r}; use one of {', '.join(RECURRENT_INITS)}")
    # W_hh is [H, G*H]: square, so an identity, only for the single-gate cells.
    if m.recurrent_init == "identity" and RNN_CELLS[m.cell].num_gates != 1:
      raise UserError(f"config.model.recurrent_init=identity (IRNN) is for rnn_relu and rnn_tanh, not {m.cell!r}; "
                      "pass --config.model.cell=rnn_relu, or --config.model.recurrent_init=uniform")
    if m.recurrent_init_scale <= 0:
      raise UserError(f"config.model.recurrent_init_scale must be > 0 (got {m.recurrent_init_scale}); pass e.g. 1.0")
    mogrifier.validate(m)
    cudnn_lstm.validate(m)

  def describe(self) -> str:
    sizes = "/".join(map(str, self.sizes)) if len(set(self.sizes)) > 1 else f"{self.nlayers}x{self.nhid}"
    mogrify = (f", {self.mogrify_rounds} rounds of rank {self.mogrify_rank or 'full'}" if self.cell == mogrifier.NAME
               else "")
    return (f"{self.cell} {sizes} (emsize {self.emsize}, {'tied' if self.tied else 'untied'}{mogrify}"
            f"{precision.describe(self.matmul_dtype)})")

  def init_params(self, seed: int) -> Params:
    tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
    return self._network.init(jax.random.PRNGKey(seed), tokens_1x1, self.init_carry(1))["params"]

  def init_carry(self, batch_size: int) -> Carry:
    return tuple(tuple(jnp.zeros((batch_size, size)) for _ in range(RNN_CELLS[self.cell].num_states))
                 for size in self.sizes)

  def dropout_masks(self, rng: jax.Array, batch_size: int) -> Masks:
    """AWD-LSTM's masks for one training window, by name; only those whose rate is > 0."""
    gates = RNN_CELLS[self.cell].num_gates
    keys = iter(jax.random.split(rng, 3 + 2 * self.nlayers))
    masks = {}
    if self.dropoute:
      masks["embedding_V"] = _keep_mask(next(keys), self.dropoute, (self.vocab_size,))
    if self.locked_dropout:
      rates = {"input_BxE": (self.dropouti, self.emsize), "output_BxH": (self.dropout, self.sizes[-1])}
      rates.update({f"hidden_{k}_BxH": (self.dropouth, size) for k, size in enumerate(self.sizes[:-1])})
      masks.update({name: _keep_mask(next(keys), p, (batch_size, size)) for name, (p, size) in rates.items() if p})
    if self.wdrop:
      masks.update({f"w_hh_{k}": _keep_mask(next(keys), self.wdrop, (size, gates * size))
                    for k, size in enumerate(self.sizes)})
    return masks

  def features(self, params: Params, tokens_TxB: jax.Array, carry: Carry, valid_T: jax.Array | None = None, *,
               train: bool = False, rng: jax.Array | None = None, masks: Masks | None = None) -> ModelOutput:
    """`masks` (from `dropout_masks`) replace the ones drawn from `rng`, for tests against a reference."""
    if valid_T is None:
      valid_T = jnp.ones(tokens_TxB.shape[0], bool)
    if train and masks is None:
      # fold_in: the word_language_model's dropout keeps drawing from `rng` itself, as before these masks.
      masks = self.dropout_masks(jax.random.fold_in(rng, 1), tokens_TxB.shape[1])
    h_TxBxH, carry, raw_TxBxH = self._network.apply(
        {"params": params}, tokens_TxB, carry, valid_T, train, masks if train else {},
        rngs={"dropout": rng} if train and rng is not None else {}, method=_Network.features)
    return ModelOutput(h_TxBxH, carry, {"top_raw_TxBxH": raw_TxBxH})

  def logits(self, params: Params, features_TxBxH: jax.Array) -> jax.Array:
    return self._network.apply({"params": params}, features_TxBxH, method=_Network.decode)

  def nll(self, params: Params, features_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    return self._network.apply({"params": params}, features_TxBxH, targets_TxB, method=_Network.nll)
