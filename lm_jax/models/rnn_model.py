"""The RNN family (config.model.kind = "rnn"): embedding -> dropout -> stacked LSTM/GRU/RNN (dropout
between layers) -> dropout -> decoder, the reference's RNNModel.

Parameters mirror the reference's state_dict one to one (transposed to x @ W layout):
  embedding [V, E]                                encoder.weight
  layer_k_w_ih [I, G*H], layer_k_w_hh [H, G*H]    rnn.weight_ih_lk.T, rnn.weight_hh_lk.T
  layer_k_b_ih [G*H], layer_k_b_hh [G*H]          rnn.bias_ih_lk, rnn.bias_hh_lk
  decoder_weight [V, H] (untied only)             decoder.weight
  decoder_bias [V]                                decoder.bias
The carried state is a tuple of [nlayers, B, H] arrays, like PyTorch's hidden (h, c).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS, State
from lm_jax.models.interface import LanguageModel, ModelOutput, Params
from lm_jax.models.recurrence import run_layer
from lm_jax.models.softmax_nll import decoder_nll


def uniform(scale: float) -> nn.initializers.Initializer:
  """U(-scale, scale), the reference's init."""

  def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


class _Network(nn.Module):
  """The parameters and the forward pass; RNNModel below is what the rest of lm_jax calls."""

  vocab_size: int
  cell: str
  emsize: int
  nhid: int
  nlayers: int
  dropout: float
  tied: bool
  init_range: float
  unroll: int

  def setup(self):
    gates = CELLS[self.cell].num_gates * self.nhid
    recurrent_init = uniform(1.0 / self.nhid ** 0.5)
    self.embedding_VxE = self.param("embedding", uniform(self.init_range), (self.vocab_size, self.emsize))
    self.layers = [
        {"w_ih": self.param(f"layer_{k}_w_ih", recurrent_init, (self.emsize if k == 0 else self.nhid, gates)),
         "w_hh": self.param(f"layer_{k}_w_hh", recurrent_init, (self.nhid, gates)),
         "b_ih": self.param(f"layer_{k}_b_ih", recurrent_init, (gates,)),
         "b_hh": self.param(f"layer_{k}_b_hh", recurrent_init, (gates,))}
        for k in range(self.nlayers)]
    self.decoder_weight_VxH = (self.embedding_VxE if self.tied else
                               self.param("decoder_weight", uniform(self.init_range), (self.vocab_size, self.nhid)))
    self.decoder_bias_V = self.param("decoder_bias", nn.initializers.zeros, (self.vocab_size,))
    self.drop = nn.Dropout(self.dropout)

  def __call__(self, tokens_TxB: jax.Array, carry: State) -> jax.Array:
    """Logits, so that `init` creates every parameter."""
    return self.decode(self.features(tokens_TxB, carry, jnp.ones(tokens_TxB.shape[0], bool), train=False)[0])

  def features(self, tokens_TxB: jax.Array, carry: State, valid_T: jax.Array, train: bool) -> tuple[jax.Array, State]:
    x = self.drop(self.embedding_VxE[tokens_TxB], deterministic=not train)
    new_carry = []
    for k, weights in enumerate(self.layers):
      layer_state = tuple(s[k] for s in carry)
      x, layer_state = run_layer(CELLS[self.cell], weights, x, layer_state, valid_T, self.unroll)
      x = self.drop(x, deterministic=not train)  # between layers, and after the last one
      new_carry.append(layer_state)
    return x, tuple(jnp.stack(states) for states in zip(*new_carry))

  def decode(self, h_TxBxH: jax.Array) -> jax.Array:
    # Written as W h: with h @ W^T, XLA:CPU copies W transposed (26 MB at WikiText-2 size) for every
    # single-row product, i.e. once per sampled word; W h reads W in place.
    return jnp.einsum("vh,tbh->tbv", self.decoder_weight_VxH, h_TxBxH) + self.decoder_bias_V

  def nll(self, h_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    steps, batch, nhid = h_TxBxH.shape
    nll_N = decoder_nll(h_TxBxH.reshape(steps * batch, nhid), self.decoder_weight_VxH, self.decoder_bias_V,
                        targets_TxB.reshape(steps * batch))
    return nll_N.reshape(steps, batch)


@dataclasses.dataclass(frozen=True)
class RNNModel(LanguageModel):
  """The reference's RNNModel; fields as config.model's (dropout: the reference's, on the embedding,
  between layers and on the output)."""

  kind = "rnn"

  vocab_size: int
  cell: str = "lstm"
  emsize: int = 200
  nhid: int = 200
  nlayers: int = 2
  dropout: float = 0.2
  tied: bool = False
  init_range: float = 0.1  # embedding and decoder weights ~ U(-init_range, init_range)
  unroll: int = 1          # lax.scan unroll of the recurrence's forward

  @property
  def _network(self) -> _Network:
    return _Network(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

  @classmethod
  def validate_config(cls, m: ml_collections.ConfigDict) -> None:
    if m.cell not in CELLS:
      raise UserError(f"unknown cell {m.cell!r}; use one of {', '.join(CELLS)}")
    for name in ("emsize", "nhid", "nlayers", "unroll"):
      if m[name] <= 0:
        raise UserError(f"config.model.{name} must be > 0 (got {m[name]}); pass --config.model.{name}=N")
    if not 0.0 <= m.dropout < 1.0:
      raise UserError(f"config.model.dropout must be in [0, 1) (got {m.dropout}); pass e.g. --config.model.dropout=0.2")
    if m.tied and m.nhid != m.emsize:
      raise UserError(f"a tied model needs nhid == emsize (got nhid {m.nhid}, emsize {m.emsize}); set "
                      "--config.model.emsize and --config.model.nhid equal, or --config.model.tied=False")
    if m.init_range <= 0:
      raise UserError(f"config.model.init_range must be > 0 (got {m.init_range}); pass e.g. 0.1")

  def describe(self) -> str:
    return f"{self.cell} {self.nlayers}x{self.nhid} (emsize {self.emsize}, {'tied' if self.tied else 'untied'})"

  def init_params(self, seed: int) -> Params:
    tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
    return self._network.init(jax.random.PRNGKey(seed), tokens_1x1, self.init_carry(1))["params"]

  def init_carry(self, batch_size: int) -> State:
    return tuple(jnp.zeros((self.nlayers, batch_size, self.nhid)) for _ in range(CELLS[self.cell].num_states))

  def features(self, params: Params, tokens_TxB: jax.Array, carry: State, valid_T: jax.Array | None = None, *,
               train: bool = False, rng: jax.Array | None = None) -> ModelOutput:
    if valid_T is None:
      valid_T = jnp.ones(tokens_TxB.shape[0], bool)
    h_TxBxH, carry = self._network.apply({"params": params}, tokens_TxB, carry, valid_T, train,
                                         rngs={"dropout": rng} if train else {}, method=_Network.features)
    return ModelOutput(h_TxBxH, carry, {})

  def logits(self, params: Params, features_TxBxH: jax.Array) -> jax.Array:
    return self._network.apply({"params": params}, features_TxBxH, method=_Network.decode)

  def nll(self, params: Params, features_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    return self._network.apply({"params": params}, features_TxBxH, targets_TxB, method=_Network.nll)
