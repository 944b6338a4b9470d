"""Mixed precision (config.model.matmul_dtype): float32 is today's program exactly; bfloat16 is float64
NumPy with every matmul's inputs rounded to bfloat16, trains with float32 state, and its gradients are
close to float32's."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from lm_jax import config as config_lib
from lm_jax import steps
from lm_jax.data.batching import put_on_device, window_bounds
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS
from lm_jax.models.rnn_model import RNNModel
from lm_jax.models.transformer import LAYER_NORM_EPS, TransformerModel, sinusoids
from tests.conftest import tiny_config, token_ids
from tests.test_cells import numpy_step

V, T, B = 50, 8, 3


# init_range 1 unless told: logits of order 1, where bfloat16's rounding shows in the loss.
def rnn(cell: str = "lstm", **options) -> RNNModel:
  return RNNModel(**{"vocab_size": V, "cell": cell, "emsize": 16, "nhid": 16, "nlayers": 2, "dropout": 0.0,
                     "init_range": 1.0, **options})


def transformer(**options) -> TransformerModel:
  return TransformerModel(**{"vocab_size": V, "emsize": 16, "nhead": 2, "nhid": 24, "nlayers": 1, "dropout": 0.0,
                             "layer_dropout": 0.0, "init_range": 1.0, **options})


FAMILIES = {"lstm": lambda **o: rnn("lstm", **o), "gru": lambda **o: rnn("gru", **o), "transformer": transformer}


def tokens(seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(V, size=(T + 1, B)).astype(np.int32)


def loss_logits_and_grads(model, params, tokens_TxB):
  def loss(params):
    output = model.features(params, tokens_TxB[:-1], model.init_carry(B))
    nll_TxB = model.nll(params, output.features_TxBxH, tokens_TxB[1:])
    return jnp.mean(nll_TxB), (nll_TxB, model.logits(params, output.features_TxBxH))

  (_, (nll_TxB, logits_TxBxV)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return nll_TxB, logits_TxBxV, grads


# --- float64 NumPy references with each matmul's inputs rounded to bfloat16 ------------------------------


def bf16(x) -> np.ndarray:
  return np.asarray(x, np.float64).astype(ml_dtypes.bfloat16).astype(np.float64)


def bf16_matmul(a, b) -> np.ndarray:
  return bf16(a) @ bf16(b)


def numpy_nll(logits_TxBxV: np.ndarray, targets_TxB: np.ndarray) -> np.ndarray:
  max_TxB = logits_TxBxV.max(-1)
  log_sum_TxB = max_TxB + np.log(np.exp(logits_TxBxV - max_TxB[..., None]).sum(-1))
  return log_sum_TxB - np.take_along_axis(logits_TxBxV, targets_TxB[..., None], -1)[..., 0]


def numpy_rnn_logits(model: RNNModel, params, tokens_TxB: np.ndarray) -> np.ndarray:
  p = {name: np.asarray(value, np.float64) for name, value in params.items()}
  x_TxBxI = p["embedding"][tokens_TxB]
  for k, size in enumerate(model.sizes):
    state = tuple(np.zeros((B, size)) for _ in range(CELLS[model.cell].num_states))
    outputs = []
    for x_BxI in x_TxBxI:  # numpy_step takes PyTorch's [G*H, in] layout
      state = numpy_step(model.cell, x_BxI, state, p[f"layer_{k}_w_ih"].T, p[f"layer_{k}_w_hh"].T,
                         p[f"layer_{k}_b_ih"], p[f"layer_{k}_b_hh"], matmul=bf16_matmul)
      outputs.append(state[0])
    x_TxBxI = np.stack(outputs)
  return bf16_matmul(x_TxBxI, p["decoder_weight"].T) + p["decoder_bias"]


def numpy_transformer_logits(model: TransformerModel, params, tokens_TxB: np.ndarray) -> np.ndarray:
  """The reference's post-norm encoder LM (transformer.py's docstring), one layer, no dropout."""
  p = {name: np.asarray(value, np.float64) for name, value in params.items()}
  heads, emsize = model.nhead, model.emsize
  size = emsize // heads

  def norm(x, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + LAYER_NORM_EPS) * p[f"{name}_scale"] + p[f"{name}_bias"]

  pe_TxE = np.asarray(sinusoids(np.arange(T), emsize, np), np.float64)
  x_BxTxE = (p["embedding"][tokens_TxB] * math.sqrt(emsize) + pe_TxE[:, None]).transpose(1, 0, 2)
  q, k, v = np.split(bf16_matmul(x_BxTxE, p["layer_0_in_proj"]) + p["layer_0_in_proj_bias"], 3, axis=-1)
  heads_of = lambda a_BxTxE: a_BxTxE.reshape(B, T, heads, size).transpose(0, 2, 1, 3)  # [B, N, T, D]
  scores_BxNxTxT = bf16_matmul(heads_of(q), heads_of(k).transpose(0, 1, 3, 2)) / math.sqrt(size)
  scores_BxNxTxT = np.where(np.tril(np.ones((T, T), bool)), scores_BxNxTxT, -np.inf)
  weights_BxNxTxT = np.exp(scores_BxNxTxT - scores_BxNxTxT.max(-1, keepdims=True))
  weights_BxNxTxT /= weights_BxNxTxT.sum(-1, keepdims=True)
  attended_BxTxE = bf16_matmul(weights_BxNxTxT, heads_of(v)).transpose(0, 2, 1, 3).reshape(B, T, emsize)
  x_BxTxE = norm(x_BxTxE + bf16_matmul(attended_BxTxE, p["layer_0_out_proj"]) + p["layer_0_out_proj_bias"],
                 "layer_0_norm1")
  inner_BxTxF = np.maximum(bf16_matmul(x_BxTxE, p["layer_0_linear1"]) + p["layer_0_linear1_bias"], 0.0)
  x_BxTxE = norm(x_BxTxE + bf16_matmul(inner_BxTxF, p["layer_0_linear2"]) + p["layer_0_linear2_bias"],
                 "layer_0_norm2")
  h_TxBxE = norm(x_BxTxE, "final_norm").transpose(1, 0, 2)
  return bf16_matmul(h_TxBxE, p["decoder_weight"].T) + p["decoder_bias"]


NUMPY_LOGITS = {"lstm": numpy_rnn_logits, "gru": numpy_rnn_logits, "transformer": numpy_transformer_logits}


# --- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_is_the_program_without_the_option(family):
  """'float32' changes nothing: the same loss and gradients bit for bit, and no bfloat16 in the program."""
  unset, float32 = FAMILIES[family](), FAMILIES[family](matmul_dtype="float32")
  params, tokens_TxB = unset.init_params(0), jnp.asarray(tokens())
  for want, got in zip(jax.tree.leaves(loss_logits_and_grads(unset, params, tokens_TxB)),
                       jax.tree.leaves(loss_logits_and_grads(float32, params, tokens_TxB))):
    assert np.array_equal(want, got)
  program = str(jax.make_jaxpr(lambda p: loss_logits_and_grads(float32, p, tokens_TxB))(params))
  assert "bf16" not in program and "bf16" in str(jax.make_jaxpr(
      lambda p: loss_logits_and_grads(FAMILIES[family](matmul_dtype="bfloat16"), p, tokens_TxB))(params))


def assert_matches_rounded_reference(got, want, float32_got) -> None:
  """Per position (the leading [T, B]): equal to float32 accumulation error, except where float32 and
  float64 round some intermediate to neighbouring bfloat16 values (one bfloat16 step of one entry: rare,
  it touches one transformer position here); everywhere far below bfloat16's own effect, the distance
  from the float32 model's result."""
  positions = lambda a: np.abs(np.asarray(a, np.float64) - want).reshape(T, B, -1).max(-1)
  error_TxB, bfloat16_effect_TxB = positions(got), positions(float32_got)
  assert np.mean(error_TxB < 2e-6) >= 0.9, error_TxB
  assert np.all(error_TxB < 0.05 * bfloat16_effect_TxB), (error_TxB, bfloat16_effect_TxB)


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_is_float64_numpy_with_bfloat16_matmul_inputs(family):
  """Logits and the fused loss against float64 NumPy in which only the matmul inputs are rounded to
  bfloat16."""
  model = FAMILIES[family](matmul_dtype="bfloat16")
  params, tokens_TxB = model.init_params(1), tokens(2)
  nll_TxB, logits_TxBxV, _ = loss_logits_and_grads(model, params, jnp.asarray(tokens_TxB))
  float32_nll_TxB, float32_logits_TxBxV, _ = loss_logits_and_grads(FAMILIES[family](), params, jnp.asarray(tokens_TxB))
  want_logits_TxBxV = NUMPY_LOGITS[family](model, params, tokens_TxB[:-1])
  assert_matches_rounded_reference(logits_TxBxV, want_logits_TxBxV, float32_logits_TxBxV)
  assert_matches_rounded_reference(nll_TxB, numpy_nll(want_logits_TxBxV, tokens_TxB[1:]), float32_nll_TxB)


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_gradients_are_close_to_float32(family):
  """At the reference init (a peaked attention, init_range 1, amplifies bfloat16's rounding ~10x)."""
  bfloat16, float32 = FAMILIES[family](matmul_dtype="bfloat16", init_range=0.1), FAMILIES[family](init_range=0.1)
  params, tokens_TxB = float32.init_params(3), jnp.asarray(tokens(4))
  grads = loss_logits_and_grads(bfloat16, params, tokens_TxB)[2]
  want_grads = loss_logits_and_grads(float32, params, tokens_TxB)[2]
  for name, want in want_grads.items():
    assert grads[name].dtype == jnp.float32
    error = np.linalg.norm(grads[name] - want) / np.linalg.norm(want)
    assert 0 < error < 1e-2, (name, error)


def adam_training(model, epochs: int = 4, batch: int = 8, bptt: int = 10) -> tuple[list[float], steps.TrainState]:
  """Adam at lr 0.03 over a learnable stream (each word has 3 successors): per-window losses, final state."""
  optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.03)
  params = model.init_params(0)
  state = steps.TrainState(params, optimizer.init(params), model.init_carry(batch), jax.random.PRNGKey(0),
                           jnp.int32(0))
  train_step = steps.make_train_step(model, optimizer, bptt)
  split = put_on_device(token_ids(batch * 121, V, seed=5), batch, bptt, "train")
  losses = []
  for _ in range(epochs):
    for start, length in window_bounds(split.rows, bptt):
      state, metrics = train_step(state, steps.WindowAt(start, length), split.padded_TxB)
      losses.append(float(metrics["loss"]))
  return losses, state


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_bfloat16_trains_like_float32_with_float32_params_and_optimiser_state(family):
  losses, state = adam_training(FAMILIES[family](matmul_dtype="bfloat16", init_range=0.1))
  float32_losses, _ = adam_training(FAMILIES[family](init_range=0.1))
  final, float32_final = np.mean(losses[-4:]), np.mean(float32_losses[-4:])
  assert final < losses[0] - 0.5 and abs(final - float32_final) < 0.1, (losses, float32_losses)
  floats = [leaf for leaf in jax.tree.leaves((state.params, state.opt_state)) if jnp.issubdtype(leaf.dtype, jnp.floating)]
  assert len(floats) >= 3 * len(state.params)  # the parameters, Adam's two moments of each
  assert all(leaf.dtype == jnp.float32 for leaf in floats)


def test_unknown_matmul_dtype_is_one_line():
  with pytest.raises(UserError, match=r"^unknown config.model.matmul_dtype 'float16'; use "
                                      r"--config.model.matmul_dtype= one of float32, bfloat16$"):
    config_lib.validate(tiny_config(**{"model.matmul_dtype": "float16"}))
  config_lib.validate(tiny_config(**{"model.kind": "transformer", "model.matmul_dtype": "bfloat16"}))
