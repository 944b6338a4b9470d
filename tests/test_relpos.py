"""The transformer's relative positions (config.model.positions = "relative", lm_jax/models/positions.py): scores
and logits of a window with memory against float64 NumPy written from Transformer-XL's formula (float32 and
bfloat16 matmuls, post- and pre-norm, tied), features that see only distances, a memory covering the whole
context equal to one longer window, the key/value cache equal to the whole sequence at once, the absolute
model unchanged, and the one-line refusals. Causality and generation: tests/test_transformer.py."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.errors import UserError
from lm_jax.models.positions import distance_table, relative_scores
from lm_jax.models.transformer import LAYER_NORM_EPS, KVCache, TransformerModel
from lm_jax.models.transformer_convert import export_state_dict
from tests.test_precision import bf16

V, E, HEADS, F = 30, 16, 2, 24
D = E // HEADS


def relative_model(**options) -> TransformerModel:
  return TransformerModel(**{"vocab_size": V, "emsize": E, "nhead": HEADS, "nhid": F, "nlayers": 2, "dropout": 0.0,
                             "layer_dropout": 0.0, "positions": "relative", **options})


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- float64 NumPy from the paper's formula ------------------------------------------------------------


def numpy_sinusoids(distances: np.ndarray) -> np.ndarray:
  """R[d]: feature 2i sin(d w_i), 2i+1 cos(d w_i), w_i = 10000^(-2i/E), in float64."""
  angles = distances[:, None] * 10000.0 ** (-np.arange(0, E, 2) / E)
  return np.stack([np.sin(angles), np.cos(angles)], -1).reshape(len(distances), E)


def numpy_scores(q_TxBxNxD, keys_BxSxNxD, relative_proj_ExE, u_NxD, v_NxD, round_=lambda x: x) -> np.ndarray:
  """(q_t + u) . k_s + (q_t + v) . (R[t + C - s] W_r), per pair (t, s): the T queries follow the C = S - T
  older keys. Each product's inputs pass through `round_` (bfloat16's rounding, or none). [B, N, T, S]."""
  steps, keys = q_TxBxNxD.shape[0], keys_BxSxNxD.shape[1]
  distance_TxS = np.arange(steps)[:, None] + (keys - steps) - np.arange(keys)
  r_SxNxD = (round_(numpy_sinusoids(np.arange(keys))) @ round_(relative_proj_ExE)).reshape(keys, HEADS, D)
  r_TxSxNxD = r_SxNxD[np.clip(distance_TxS, 0, keys - 1)]  # distances < 0 (future keys) are masked later
  content = np.einsum("tbnd,bsnd->bnts", round_(q_TxBxNxD + u_NxD), round_(keys_BxSxNxD))
  return content + np.einsum("tbnd,tsnd->bnts", round_(q_TxBxNxD + v_NxD), round_(r_TxSxNxD))


def numpy_logits(model: TransformerModel, params, tokens_TxB: np.ndarray, cache: KVCache, round_) -> np.ndarray:
  """One layer after a memory of C keys/values whose newest is at position_B - 1 (slots before position 0 empty)."""
  p = {name: np.asarray(value, np.float64) for name, value in params.items()}
  matmul = lambda a, b: round_(a) @ round_(b)
  (steps, batch), capacity = tokens_TxB.shape, cache.keys[0].shape[1]

  def norm(x, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + LAYER_NORM_EPS) * p[f"{name}_scale"] + p[f"{name}_bias"]

  x_TxBxE = p["embedding"][tokens_TxB] * math.sqrt(E)  # no position added
  h_TxBxE = norm(x_TxBxE, "layer_0_norm1") if model.pre_norm else x_TxBxE
  q, k, v = np.split(matmul(h_TxBxE, p["layer_0_in_proj"]) + p["layer_0_in_proj_bias"], 3, -1)
  keys_BxSxE = np.concatenate([np.asarray(cache.keys[0], np.float64), k.transpose(1, 0, 2)], 1)
  values_BxSxE = np.concatenate([np.asarray(cache.values[0], np.float64), v.transpose(1, 0, 2)], 1)
  scores = numpy_scores(q.reshape(steps, batch, HEADS, D), keys_BxSxE.reshape(batch, -1, HEADS, D),
                        p["layer_0_relative_proj"], p["relative_u"], p["relative_v"], round_) / math.sqrt(D)
  start_B = np.asarray(cache.position_B)
  key_position_BxS = start_B[:, None] - capacity + np.arange(capacity + steps)
  query_position_BxT = start_B[:, None] + np.arange(steps)
  visible_BxTxS = (key_position_BxS[:, None] <= query_position_BxT[:, :, None]) & (key_position_BxS[:, None] >= 0)
  scores = np.where(visible_BxTxS[:, None], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  attended_BxNxTxD = np.einsum("bnts,bsnd->bntd", round_(weights), round_(values_BxSxE.reshape(batch, -1, HEADS, D)))
  attended_TxBxE = attended_BxNxTxD.transpose(2, 0, 1, 3).reshape(steps, batch, E)
  x_TxBxE = x_TxBxE + matmul(attended_TxBxE, p["layer_0_out_proj"]) + p["layer_0_out_proj_bias"]
  x_TxBxE = x_TxBxE if model.pre_norm else norm(x_TxBxE, "layer_0_norm1")
  h_TxBxE = norm(x_TxBxE, "layer_0_norm2") if model.pre_norm else x_TxBxE
  inner = np.maximum(matmul(h_TxBxE, p["layer_0_linear1"]) + p["layer_0_linear1_bias"], 0.0)
  x_TxBxE = x_TxBxE + matmul(inner, p["layer_0_linear2"]) + p["layer_0_linear2_bias"]
  x_TxBxE = x_TxBxE if model.pre_norm else norm(x_TxBxE, "layer_0_norm2")
  decoder_VxE = p["embedding"] if model.transformer_tied else p["decoder_weight"]
  return matmul(norm(x_TxBxE, "final_norm"), decoder_VxE.T) + p["decoder_bias"]


def jitted_features(model: TransformerModel, params):
  return jax.jit(lambda tokens_TxB, carry: model.features(params, tokens_TxB, carry))


def random_cache(capacity: int, start_B: list[int], seed: int) -> KVCache:
  keys, values = np.random.default_rng(seed).normal(size=(2, len(start_B), capacity, E)).astype(np.float32)
  return KVCache((jnp.asarray(keys),), (jnp.asarray(values),), jnp.asarray(start_B, jnp.int32))


# --- the tests ---------------------------------------------------------------------------------------


def test_scores_are_transformer_xl_content_and_position_terms():
  """relative_scores (the shifted position term included) for 5 queries after 3 memory keys, on every pair a
  causal query sees."""
  rng = np.random.default_rng(0)
  steps, memory, batch = 5, 3, 2
  q_TxBxNxD = rng.normal(size=(steps, batch, HEADS, D))
  keys_BxSxNxD = rng.normal(size=(batch, memory + steps, HEADS, D))
  relative_proj_ExE = rng.normal(size=(E, E)) / math.sqrt(E)
  u_NxD, v_NxD = rng.normal(size=(2, HEADS, D))
  position_keys_SxNxD = (distance_table(memory + steps, E) @ relative_proj_ExE).reshape(-1, HEADS, D)
  got = relative_scores(*(jnp.asarray(a, jnp.float32) for a in (q_TxBxNxD, keys_BxSxNxD, position_keys_SxNxD, u_NxD,
                                                                v_NxD)), jnp.einsum)
  want = numpy_scores(q_TxBxNxD, keys_BxSxNxD, relative_proj_ExE, u_NxD, v_NxD)
  causal_TxS = np.arange(memory + steps) <= np.arange(steps)[:, None] + memory
  assert rel_err(np.asarray(got)[..., causal_TxS], want[..., causal_TxS]) < 1e-5


@pytest.mark.parametrize("options", [{}, {"pre_norm": True, "transformer_tied": True, "matmul_dtype": "bfloat16"}],
                         ids=["post-norm", "pre-norm-tied-bfloat16"])
def test_window_after_a_memory_is_float64_numpy(options):
  """One layer, 4 tokens after a memory of 3 (column 1 at position 2: one memory slot still empty). bfloat16:
  against NumPy with each product's inputs rounded as the model rounds them, closer by far than float32's
  logits are (bfloat16's own effect)."""
  model = relative_model(nlayers=1, memory=3, init_range=1.0, **options)
  params = model.init_params(1)
  params.update(relative_u=params["relative_u"] * 20, relative_v=params["relative_v"] * 20)  # biases that show
  tokens_TxB, cache = np.random.default_rng(2).integers(V, size=(4, 2)), random_cache(3, [40, 2], seed=3)
  logits = jax.jit(lambda m: m.logits(params, m.features(params, jnp.asarray(tokens_TxB), cache).features_TxBxH),
                   static_argnums=0)
  got = logits(model)
  if model.matmul_dtype == "float32":
    assert rel_err(got, numpy_logits(model, params, tokens_TxB, cache, lambda x: x)) < 1e-5
  else:
    want = numpy_logits(model, params, tokens_TxB, cache, bf16)
    float32_got = logits(dataclasses.replace(model, matmul_dtype="float32"))
    assert np.max(np.abs(got - want)) < 0.05 * np.max(np.abs(float32_got - want))


def test_features_see_distances_only():
  """The same full memory at a column's position 46,000 (PTB's end of an epoch) or 5: bit for bit the same features
  with relative positions; the absolute ones differ, which is what made the memory hurt."""
  tokens_TxB = jnp.asarray(np.random.default_rng(4).integers(V, size=(5, 2)))
  for positions, same in (("relative", True), ("absolute", False)):
    model = relative_model(memory=5, positions=positions)
    params = model.init_params(0)
    features = jitted_features(model, params)
    carry = features(tokens_TxB, model.init_carry(2)).carry
    later = carry._replace(position_B=carry.position_B + 46_000 - 5)
    now, then = (features(tokens_TxB, c).features_TxBxH for c in (carry, later))
    assert np.array_equal(now, then) == same, positions


def test_memory_covering_the_whole_context_is_one_longer_window():
  """Windows of 4, 4, 4 with memory 8: every window's memory holds all earlier tokens' keys and values,
  computed over the same causal context, and scores see only distances, so each window is its part of the 12
  tokens scored at once without memory. Two layers, pre-norm."""
  model = relative_model(memory=8, pre_norm=True)
  params = model.init_params(2)
  tokens_TxB = jnp.asarray(np.random.default_rng(5).integers(V, size=(12, 3)))
  whole = jitted_features(relative_model(memory=0, pre_norm=True), params)(tokens_TxB, ()).features_TxBxH
  features, carry, parts = jitted_features(model, params), model.init_carry(3), []
  for start in (0, 4, 8):
    output = features(tokens_TxB[start:start + 4], carry)
    carry, parts = output.carry, parts + [output.features_TxBxH]
  assert rel_err(jnp.concatenate(parts), whole) < 1e-5
  assert list(carry.position_B) == [12] * 3


def test_key_value_cache_is_the_whole_sequence_at_once():
  """The decoding carry (generation's path): a prompt of 3, then one token at a time, gives the logits of the 9
  tokens fed at once."""
  model = relative_model(memory=2)
  params = model.init_params(3)
  tokens_TxB = jnp.asarray(np.random.default_rng(6).integers(V, size=(9, 2)))
  logits = jax.jit(lambda tokens, carry: (lambda out: (model.logits(params, out.features_TxBxH), out.carry))(
      model.features(params, tokens, carry)))
  whole, _ = logits(tokens_TxB, model.init_decoding_carry(2, 9))
  parts, carry = logits(tokens_TxB[:3], model.init_decoding_carry(2, 9))
  for t in range(3, 9):
    step, carry = logits(tokens_TxB[t:t + 1], carry)
    parts = jnp.concatenate([parts, step])
  assert rel_err(parts, whole) < 1e-5


def test_absolute_parameters_are_unchanged_and_relative_adds_its_own():
  absolute = relative_model(positions="absolute").init_params(0)
  relative = relative_model().init_params(0)
  assert set(relative) - set(absolute) == {"relative_u", "relative_v", "layer_0_relative_proj", "layer_1_relative_proj"}
  assert all(np.array_equal(absolute[name], relative[name]) for name in absolute)
  assert relative["relative_u"].shape == (HEADS, D) and relative["layer_1_relative_proj"].shape == (E, E)


def test_the_references_export_refuses_relative_positions():
  model = relative_model()
  with pytest.raises(UserError) as raised:
    export_state_dict(model, model.init_params(0))
  assert str(raised.value).startswith("the reference's TransformerModel has no pre_norm, memory or relative "
                                      "positions, so this model has no equivalent there;")
