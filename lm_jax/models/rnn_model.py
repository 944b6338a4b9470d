"""RNNModel: embedding -> dropout -> stacked RNN (dropout between layers) -> dropout -> decoder.

Parameters mirror the reference's state_dict one to one (transposed to x @ W layout):
  embedding [V, E]                                encoder.weight
  layer_k_w_ih [I, G*H], layer_k_w_hh [H, G*H]    rnn.weight_ih_lk.T, rnn.weight_hh_lk.T
  layer_k_b_ih [G*H], layer_k_b_hh [G*H]          rnn.bias_ih_lk, rnn.bias_hh_lk
  decoder_weight [V, H] (untied only)             decoder.weight
  decoder_bias [V]                                decoder.bias
The carried state is a tuple of [nlayers, B, H] arrays, like PyTorch's hidden (h, c).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.models.cells import CELLS, State
from lm_jax.models.recurrence import run_layer
from lm_jax.models.softmax_nll import decoder_nll


def uniform(scale: float) -> nn.initializers.Initializer:
  """U(-scale, scale), the reference's init."""

  def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


class RNNModel(nn.Module):
  vocab_size: int
  cell: str = "lstm"
  emsize: int = 200
  nhid: int = 200
  nlayers: int = 2
  dropout: float = 0.2
  tied: bool = False
  init_range: float = 0.1
  unroll: int = 1

  def setup(self):
    cell = CELLS[self.cell]
    gates = cell.num_gates * self.nhid
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

  def __call__(self, tokens_TxB: jax.Array, carry: State, valid_T: jax.Array | None = None,
               *, train: bool = False) -> tuple[jax.Array, State]:
    """Logits [T, B, V] and the carried state after the window's valid steps."""
    h_TxBxH, carry = self.features(tokens_TxB, carry, valid_T, train=train)
    return self.decode(h_TxBxH), carry

  def features(self, tokens_TxB: jax.Array, carry: State, valid_T: jax.Array | None = None,
               *, train: bool = False) -> tuple[jax.Array, State]:
    """The dropped-out top-layer outputs [T, B, H] that feed the decoder, and the new state."""
    if valid_T is None:
      valid_T = jnp.ones(tokens_TxB.shape[0], bool)
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

  def nll(self, tokens_TxB: jax.Array, targets_TxB: jax.Array, carry: State, valid_T: jax.Array | None = None,
          *, train: bool = False) -> tuple[jax.Array, State]:
    """-log p(target) per position [T, B] (decoder and softmax fused, see softmax_nll), and the new state."""
    h_TxBxH, carry = self.features(tokens_TxB, carry, valid_T, train=train)
    steps, batch, nhid = h_TxBxH.shape
    nll_N = decoder_nll(h_TxBxH.reshape(steps * batch, nhid), self.decoder_weight_VxH, self.decoder_bias_V,
                        targets_TxB.reshape(steps * batch))
    return nll_N.reshape(steps, batch), carry


def zero_carry(cell: str, nlayers: int, batch_size: int, nhid: int) -> State:
  """The state at the start of each epoch and each evaluation."""
  return tuple(jnp.zeros((nlayers, batch_size, nhid)) for _ in range(CELLS[cell].num_states))


def init_params(model: RNNModel, seed: int, batch_size: int) -> dict:
  """Freshly initialised parameters (the reference's init) from `seed`."""
  tokens_TxB = jnp.zeros((1, batch_size), jnp.int32)
  carry = zero_carry(model.cell, model.nlayers, batch_size, model.nhid)
  return model.init(jax.random.PRNGKey(seed), tokens_TxB, carry)["params"]


def model_from_config(model_config, vocab_size: int) -> RNNModel:
  return RNNModel(vocab_size=vocab_size, cell=model_config.cell, emsize=model_config.emsize,
                  nhid=model_config.nhid, nlayers=model_config.nlayers, dropout=model_config.dropout,
                  tied=model_config.tied, init_range=model_config.init_range, unroll=model_config.unroll)
