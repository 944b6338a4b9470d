"""The Transformer family (config.model.kind = "transformer"): the reference's TransformerModel, an
nn.Transformer's encoder used as a causal language model:

  embedding * sqrt(emsize) + sinusoidal positions -> dropout -> nlayers encoder layers -> LayerNorm -> decoder

Each encoder layer is nn.TransformerEncoderLayer with its defaults: post-norm (x = norm(x + sublayer(x))),
ReLU, layer_norm_eps 1e-5, dropout on the attention weights, after each sublayer and inside the
feed-forward block. The reference builds nn.Transformer with its default dropout 0.1 inside the layers and
passes its --dropout (0.2) to the positional encoding only: here `layer_dropout` and `dropout`. The final
LayerNorm is nn.Transformer's encoder norm, applied after the last layer's own (post-norm) one.

Parameters mirror the reference's state_dict one to one (matrices transposed to x @ W layout):
  embedding [V, E]                                 input_emb.weight
  layer_k_in_proj [E, 3E], layer_k_in_proj_bias    encoder.layers.k.self_attn.in_proj_weight.T, .in_proj_bias
  layer_k_out_proj [E, E], layer_k_out_proj_bias   encoder.layers.k.self_attn.out_proj.weight.T, .bias
  layer_k_linear1 [E, F], layer_k_linear1_bias     encoder.layers.k.linear1.weight.T, .bias
  layer_k_linear2 [F, E], layer_k_linear2_bias     encoder.layers.k.linear2.weight.T, .bias
  layer_k_norm{1,2}_scale, layer_k_norm{1,2}_bias  encoder.layers.k.norm{1,2}.weight, .bias
  final_norm_scale, final_norm_bias                encoder.norm.weight, .bias
  decoder_weight [V, E] (unless transformer_tied)  decoder.weight
  decoder_bias [V]                                 decoder.bias
The positional table (the reference's pos_encoder.pe buffer) is a fixed function, `sinusoids`, not a
parameter. Relative positions add relative_u, relative_v [N, D] and layer_k_relative_proj [E, E] (no reference).

The carry. The reference's model carries nothing: every window starts at position 0 (carry ()). Two
options carry a key/value cache, `KVCache`: per layer the keys and values of the last C positions
[B, C, E] and each column's position [B]. Every query attends causally to the cache and to its own
window; afterwards the cache keeps the last C positions of the two.
- `memory` = M > 0 (Transformer-XL-like): training and evaluation carry the previous M positions'
  keys and values from window to window (the train step stops their gradient). Keys and values, not
  Transformer-XL's layer inputs, are carried: the same cache serves generation, and the memory's projections
  are not recomputed each window (they are one update stale in training instead). With the reference's
  absolute positions, a column's positions count the tokens it has seen since the carry started, so a cached
  key keeps the position it was computed at; they grow over an epoch (~100k on WikiText-2), past anything a
  window without memory shows, and float32 angles of the fastest sinusoids carry ~1e-2 rad of rounding there.
- `positions` = "relative": Transformer-XL's relative attention (positions.py) in place of the
  sinusoids added to the embedding; scores see only distances, so the memory means the same all epoch.
- Generation: `init_decoding_carry` makes a cache that holds the whole generated sequence, so each new
  word costs one position, not the whole sequence again, with the same result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm_jax.errors import UserError
from lm_jax.models import precision
from lm_jax.models.interface import LanguageModel, ModelOutput, Params
from lm_jax.models.positions import POSITIONS, distance_table, relative_init_params, relative_scores, sinusoids
from lm_jax.models.softmax_nll import decoder_nll

LAYER_NORM_EPS = 1e-5  # nn.TransformerEncoderLayer's and nn.Transformer's default
REFERENCE_MAX_LEN = 5000  # rows of the reference's pos_encoder.pe buffer


class KVCache(NamedTuple):
  """Every leaf holds the batch on axis 0."""

  keys: tuple[jax.Array, ...]     # per layer [B, C, E]: the last C positions' keys, oldest first
  values: tuple[jax.Array, ...]   # per layer [B, C, E]
  position_B: jax.Array           # int32: the position of the next token of each column


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
  mean = jnp.mean(x, -1, keepdims=True)
  variance = jnp.mean(jnp.square(x - mean), -1, keepdims=True)  # biased, as torch's
  return (x - mean) * jax.lax.rsqrt(variance + LAYER_NORM_EPS) * scale + bias


Dropout = Callable[[jax.Array, float, int], jax.Array]  # (x, rate, site) -> x with dropout


def _dropout(train: bool, rng: jax.Array | None) -> Dropout:
  """Inverted dropout; each site (a fixed number per use) draws its own mask from `rng`."""

  def drop(x: jax.Array, rate: float, site: int) -> jax.Array:
    if not train or rate == 0.0:
      return x
    keep = jax.random.bernoulli(jax.random.fold_in(rng, site), 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)

  return drop


@dataclasses.dataclass(frozen=True)
class TransformerModel(LanguageModel):
  """The reference's TransformerModel; fields as config.model's."""

  kind = "transformer"
  embedding_param = "embedding"

  vocab_size: int
  emsize: int = 200
  nhead: int = 2
  nhid: int = 200             # the feed-forward size (the reference's dim_feedforward)
  nlayers: int = 2
  dropout: float = 0.2        # on embedding + positions (the reference's --dropout)
  layer_dropout: float = 0.1  # inside every encoder layer (nn.Transformer's default, which the reference keeps)
  init_range: float = 0.1     # embedding and decoder weights ~ U(-init_range, init_range)
  pre_norm: bool = False      # x + sublayer(norm(x)) instead of norm(x + sublayer(x))
  memory: int = 0             # positions of keys/values carried across windows (0: none, the reference)
  transformer_tied: bool = False  # decoder weight = embedding (the reference ignores --tied for Transformers)
  positions: str = "absolute"     # "relative": Transformer-XL's relative attention (positions.py)
  matmul_dtype: str = "float32"   # "bfloat16": matmul inputs rounded to it, float32 accumulation (precision.py)

  @classmethod
  def validate_config(cls, m: ml_collections.ConfigDict) -> None:
    for name in ("emsize", "nhead", "nhid", "nlayers"):
      if m[name] <= 0:
        raise UserError(f"config.model.{name} must be > 0 (got {m[name]}); pass --config.model.{name}=N")
    if m.emsize % m.nhead:
      raise UserError(f"config.model.nhead ({m.nhead}) must divide config.model.emsize ({m.emsize}); pass "
                      "e.g. --config.model.nhead=2")
    if m.emsize % 2:
      raise UserError(f"a transformer needs an even config.model.emsize (got {m.emsize}): its positional "
                      "encoding pairs sin and cos features; pass e.g. --config.model.emsize=200")
    for name in ("dropout", "layer_dropout"):
      if not 0.0 <= m[name] < 1.0:
        raise UserError(f"config.model.{name} must be in [0, 1) (got {m[name]}); pass e.g. "
                        f"--config.model.{name}=0.1")
    if m.memory < 0:
      raise UserError(f"config.model.memory must be >= 0 (got {m.memory}); pass 0 for none (the reference) "
                      "or the number of positions to carry, e.g. --config.model.memory=35")
    if m.positions not in POSITIONS:
      raise UserError(f"unknown config.model.positions {m.positions!r}; use --config.model.positions= one of "
                      f"{', '.join(POSITIONS)}")
    if m.init_range <= 0:
      raise UserError(f"config.model.init_range must be > 0 (got {m.init_range}); pass e.g. 0.1")

  def describe(self) -> str:
    options = [name for name, on in (("pre-norm", self.pre_norm), (f"memory {self.memory}", self.memory),
                                     ("relative positions", self._relative), ("tied", self.transformer_tied)) if on]
    return (f"transformer {self.nlayers}x{self.emsize} (nhead {self.nhead}, nhid {self.nhid}"
            + "".join(f", {o}" for o in options) + precision.describe(self.matmul_dtype) + ")")

  def init_params(self, seed: int) -> Params:
    """The reference's init: nn.Transformer's xavier_uniform_ on every matrix of the encoder, zero attention
    biases, nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) feed-forward biases, LayerNorms at 1 and 0;
    then init_weights: embedding and decoder U(-init_range, init_range), decoder bias 0."""
    e, f = self.emsize, self.nhid
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 6 * self.nlayers + 2))

    def uniform(shape: tuple[int, ...], bound: float) -> jax.Array:
      return jax.random.uniform(next(keys), shape, jnp.float32, -bound, bound)

    def xavier(fan_in: int, fan_out: int) -> jax.Array:  # [fan_in, fan_out]: x @ W layout
      return uniform((fan_in, fan_out), math.sqrt(6.0 / (fan_in + fan_out)))

    params = {"embedding": uniform((self.vocab_size, e), self.init_range)}
    for k in range(self.nlayers):
      params.update({
          f"layer_{k}_in_proj": xavier(e, 3 * e), f"layer_{k}_in_proj_bias": jnp.zeros(3 * e),
          f"layer_{k}_out_proj": xavier(e, e), f"layer_{k}_out_proj_bias": jnp.zeros(e),
          f"layer_{k}_linear1": xavier(e, f), f"layer_{k}_linear1_bias": uniform((f,), 1 / math.sqrt(e)),
          f"layer_{k}_linear2": xavier(f, e), f"layer_{k}_linear2_bias": uniform((e,), 1 / math.sqrt(f)),
          **{f"layer_{k}_norm{n}_{p}": init(e) for n in (1, 2) for p, init in (("scale", jnp.ones),
                                                                                ("bias", jnp.zeros))}})
    params.update(final_norm_scale=jnp.ones(e), final_norm_bias=jnp.zeros(e))
    if not self.transformer_tied:
      params["decoder_weight"] = uniform((self.vocab_size, e), self.init_range)
    params["decoder_bias"] = jnp.zeros(self.vocab_size)
    if self._relative:
      params.update(relative_init_params(seed, self.nlayers, e, self.nhead))
    return params

  @property
  def _relative(self) -> bool:
    return self.positions == "relative"

  def init_carry(self, batch_size: int) -> KVCache | tuple[()]:
    return self._cache(batch_size, self.memory) if self.memory else ()

  def init_decoding_carry(self, batch_size: int, max_len: int) -> KVCache:
    return self._cache(batch_size, max(max_len, self.memory))

  def _cache(self, batch_size: int, capacity: int) -> KVCache:
    empty = tuple(jnp.zeros((batch_size, capacity, self.emsize)) for _ in range(self.nlayers))
    return KVCache(empty, empty, jnp.zeros(batch_size, jnp.int32))

  def features(self, params: Params, tokens_TxB: jax.Array, carry: KVCache | tuple[()],
               valid_T: jax.Array | None = None, *, train: bool = False, rng: jax.Array | None = None) -> ModelOutput:
    steps, batch = tokens_TxB.shape
    # Without a cache (the reference) every window starts at position 0 and sees only itself.
    cache = carry if carry else self._cache(batch, 0)
    start_B = cache.position_B
    drop = _dropout(train, rng)
    positions_BxT = start_B[:, None] + jnp.arange(steps)
    x_TxBxE = params["embedding"][tokens_TxB] * math.sqrt(self.emsize)
    if not self._relative:
      # The reference's positions 0..T-1 are a constant; a cache's start at each column's own position.
      x_TxBxE = x_TxBxE + (sinusoids(positions_BxT.T, self.emsize) if carry
                           else sinusoids(np.arange(steps), self.emsize, np)[:, None])
    x_TxBxE = drop(x_TxBxE, self.dropout, 0)
    # Query at position p sees keys at positions 0..p: the cache's (slot j holds position start - C + j;
    # slots before position 0 are still empty) and its own window's.
    capacity = cache.keys[0].shape[1]
    relative = self._relative_terms(params, capacity + steps, drop) if self._relative else None
    key_positions_BxS = jnp.concatenate([start_B[:, None] - capacity + jnp.arange(capacity), positions_BxT], 1)
    visible_BxTxS = ((key_positions_BxS[:, None, :] <= positions_BxT[:, :, None])
                     & (key_positions_BxS[:, None, :] >= 0))
    new_keys, new_values = [], []
    for k in range(self.nlayers):
      x_TxBxE, keys_BxSxE, values_BxSxE = self._layer(params, k, x_TxBxE, cache.keys[k], cache.values[k],
                                                      visible_BxTxS, drop, relative)
      new_keys.append(keys_BxSxE)
      new_values.append(values_BxSxE)
    h_TxBxE = _layer_norm(x_TxBxE, params["final_norm_scale"], params["final_norm_bias"])
    if not carry:
      return ModelOutput(h_TxBxE, (), {})
    # Keep the last C valid positions (padding steps sit at the window's end, after `length`).
    length = steps if valid_T is None else jnp.sum(valid_T).astype(jnp.int32)
    keep = lambda kv_BxSxE: jax.lax.dynamic_slice_in_dim(kv_BxSxE, length, capacity, axis=1)
    new_cache = KVCache(tuple(map(keep, new_keys)), tuple(map(keep, new_values)), start_B + length)
    return ModelOutput(h_TxBxE, new_cache, {})

  def _relative_terms(self, params: Params, num_keys: int, drop: Dropout) -> tuple[jax.Array, ...]:
    """The sinusoids of the S distances relative_scores reads (dropped as the embedding, as Transformer-XL's),
    u and v."""
    table_SxE = drop(distance_table(num_keys, self.emsize), self.dropout, 1 + 4 * self.nlayers)
    return table_SxE, params["relative_u"], params["relative_v"]

  def _layer(self, params: Params, k: int, x_TxBxE: jax.Array, past_keys_BxCxE: jax.Array,
             past_values_BxCxE: jax.Array, visible_BxTxS: jax.Array, drop: Dropout,
             relative: tuple[jax.Array, ...] | None) -> tuple[jax.Array, ...]:
    """One nn.TransformerEncoderLayer; also returns the keys and values it attended to (cache + window)."""
    p = lambda name: params[f"layer_{k}_{name}"]
    norm = lambda x, n: _layer_norm(x, p(f"norm{n}_scale"), p(f"norm{n}_bias"))
    site = 1 + 4 * k
    h = norm(x_TxBxE, 1) if self.pre_norm else x_TxBxE
    attended, keys_BxSxE, values_BxSxE = self._attention(p, h, past_keys_BxCxE, past_values_BxCxE, visible_BxTxS,
                                                         lambda w: drop(w, self.layer_dropout, site), relative)
    x_TxBxE = x_TxBxE + drop(attended, self.layer_dropout, site + 1)
    x_TxBxE = x_TxBxE if self.pre_norm else norm(x_TxBxE, 1)
    h = norm(x_TxBxE, 2) if self.pre_norm else x_TxBxE
    inner = drop(jax.nn.relu(self._matmul(h, p("linear1")) + p("linear1_bias")), self.layer_dropout, site + 2)
    x_TxBxE = x_TxBxE + drop(self._matmul(inner, p("linear2")) + p("linear2_bias"), self.layer_dropout, site + 3)
    x_TxBxE = x_TxBxE if self.pre_norm else norm(x_TxBxE, 2)
    return x_TxBxE, keys_BxSxE, values_BxSxE

  def _attention(self, p: Callable[[str], jax.Array], h_TxBxE: jax.Array, past_keys_BxCxE: jax.Array,
                 past_values_BxCxE: jax.Array, visible_BxTxS: jax.Array,
                 drop_weights: Callable[[jax.Array], jax.Array],
                 relative: tuple[jax.Array, ...] | None) -> tuple[jax.Array, ...]:
    """nn.MultiheadAttention over the cache and the window: softmax(q k^T / sqrt(D)) v per head; with `relative`
    (the distances' sinusoids, u, v) Transformer-XL's scores."""
    steps, batch, emsize = h_TxBxE.shape
    heads, head_size = self.nhead, emsize // self.nhead
    q_TxBxE, k_TxBxE, v_TxBxE = jnp.split(self._matmul(h_TxBxE, p("in_proj")) + p("in_proj_bias"), 3, axis=-1)
    keys_BxSxE = jnp.concatenate([past_keys_BxCxE, k_TxBxE.transpose(1, 0, 2)], 1)
    values_BxSxE = jnp.concatenate([past_values_BxCxE, v_TxBxE.transpose(1, 0, 2)], 1)
    q_TxBxNxD = q_TxBxE.reshape(steps, batch, heads, head_size)
    split_heads = lambda a_BxSxE: a_BxSxE.reshape(batch, -1, heads, head_size)
    if relative is None:
      scores_BxNxTxS = self._einsum("tbnd,bsnd->bnts", q_TxBxNxD, split_heads(keys_BxSxE))
    else:
      table_SxE, u_NxD, v_NxD = relative
      position_keys_SxNxD = self._matmul(table_SxE, p("relative_proj")).reshape(-1, heads, head_size)
      scores_BxNxTxS = relative_scores(q_TxBxNxD, split_heads(keys_BxSxE), position_keys_SxNxD, u_NxD, v_NxD,
                                       self._einsum)
    scores_BxNxTxS = scores_BxNxTxS / math.sqrt(head_size)
    scores_BxNxTxS = jnp.where(visible_BxTxS[:, None], scores_BxNxTxS, -jnp.inf)
    weights_BxNxTxS = drop_weights(jax.nn.softmax(scores_BxNxTxS, axis=-1))
    attended_TxBxNxD = self._einsum("bnts,bsnd->tbnd", weights_BxNxTxS, split_heads(values_BxSxE))
    attended_TxBxE = self._matmul(attended_TxBxNxD.reshape(steps, batch, emsize), p("out_proj")) + p("out_proj_bias")
    return attended_TxBxE, keys_BxSxE, values_BxSxE

  def _matmul(self, a: jax.Array, b: jax.Array) -> jax.Array:
    return precision.matmul(a, b, self.matmul_dtype)

  def _einsum(self, spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return precision.einsum(spec, a, b, self.matmul_dtype)

  def _decoder_weight(self, params: Params) -> jax.Array:
    return params["embedding"] if self.transformer_tied else params["decoder_weight"]

  def logits(self, params: Params, features_TxBxH: jax.Array) -> jax.Array:
    # W h, not h W^T: XLA:CPU would copy W transposed for every sampled word (rnn_model.py).
    return self._einsum("vh,tbh->tbv", self._decoder_weight(params), features_TxBxH) + params["decoder_bias"]

  def nll(self, params: Params, features_TxBxH: jax.Array, targets_TxB: jax.Array) -> jax.Array:
    steps, batch, emsize = features_TxBxH.shape
    nll_N = decoder_nll(features_TxBxH.reshape(steps * batch, emsize), self._decoder_weight(params),
                        params["decoder_bias"], targets_TxB.reshape(steps * batch), self.matmul_dtype)
    return nll_N.reshape(steps, batch)
