"""The Mogrifier LSTM (lm_jax/models/mogrifier.py) against float64 NumPy re-computations of its equations: the layer
and its gradients (central finite differences of the float64 forward), bfloat16 matmuls, the low-rank factorisation,
the whole model with AWD's dropouts and tying; zero rounds are the LSTM exactly; its config fields' checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from lm_jax import config as config_lib
from lm_jax import convert, optim
from lm_jax.errors import UserError
from lm_jax.models import mogrifier
from lm_jax.models.recurrence import run_layer
from lm_jax.models.rnn_model import RNNModel

B, I, H = 2, 3, 4
CELL = mogrifier.MOGRIFIER_LSTM


def sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def numpy_step(w: dict, x_BxI, state, matmul=np.matmul):
  """The paper's equations in float64, lm_jax's x @ W layout: rounds i = 1, 2, ... gate x (odd) and h (even) by
  2 sigmoid(. Q_i + b_i), Q_i = left @ right at low rank; then PyTorch's LSTM on the gated pair, the state's c."""
  h_BxH, c_BxH = state
  for i in range(1, sum(name.endswith("_b") for name in w if name.startswith("mogrify_")) + 1):
    source = h_BxH if i % 2 else x_BxI
    if f"mogrify_{i}_w" in w:
      logits = matmul(source, w[f"mogrify_{i}_w"])
    else:
      logits = matmul(matmul(source, w[f"mogrify_{i}_w_left"]), w[f"mogrify_{i}_w_right"])
    gate = 2.0 * sigmoid(logits + w[f"mogrify_{i}_b"])
    x_BxI, h_BxH = (gate * x_BxI, h_BxH) if i % 2 else (x_BxI, gate * h_BxH)
  gates = matmul(x_BxI, w["w_ih"]) + w["b_ih"] + matmul(h_BxH, w["w_hh"]) + w["b_hh"]
  i_g, f_g, g_g, o_g = np.split(gates, 4, axis=-1)
  c_BxH = sigmoid(f_g) * c_BxH + sigmoid(i_g) * np.tanh(g_g)
  return sigmoid(o_g) * np.tanh(c_BxH), c_BxH


def random_weights(rounds: int, rank: int, seed: int, size_in: int = I, size: int = H) -> dict:
  rng = np.random.default_rng(seed)
  shapes = {"w_ih": (size_in, 4 * size), "w_hh": (size, 4 * size), "b_ih": (4 * size,), "b_hh": (4 * size,)}
  shapes.update({name: shape for name, (shape, _) in mogrifier.parameters(rounds, rank, size_in, size).items()})
  return {name: 0.7 * rng.normal(size=shape) for name, shape in shapes.items()}


def f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def numpy_window_loss(w, x_TxBxI, state, valid_T, out_TxBxH, state_weights):
  """sum(out * h_t) over the steps + sum(weights * final state), padding steps holding the state."""
  loss = 0.0
  for t in range(len(x_TxBxI)):
    new_state = numpy_step(w, x_TxBxI[t], state)
    loss += np.sum(out_TxBxH[t] * new_state[0])
    state = new_state if valid_T[t] else state
  return loss + sum(np.sum(sw * s) for sw, s in zip(state_weights, state))


def finite_difference_grad(loss, arrays: dict, eps: float = 1e-6) -> dict:
  """Central differences of `loss(arrays)` in float64, entry by entry."""
  grads = {}
  for name, array in arrays.items():
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
      bumped = {k: v.copy() for k, v in arrays.items()}
      bumped[name][index] = array[index] + eps
      up = loss(bumped)
      bumped[name][index] = array[index] - eps
      grad[index] = (up - loss(bumped)) / (2 * eps)
    grads[name] = grad
  return grads


@pytest.mark.parametrize("rounds, rank, valid", [(5, 0, (True,)), (4, 2, (True, True, False))],
                         ids=["one-step-full-rank", "window-rank-2-padded"])
def test_layer_and_its_gradients_match_float64(rounds, rank, valid):
  """run_layer's output, final state and hand-written VJP (every weight, the mix's included, the inputs and the
  initial state) against the float64 equations and their finite differences, to 1e-5 in float32."""
  steps = len(valid)
  rng = np.random.default_rng(rounds)
  w = random_weights(rounds, rank, seed=rounds)
  inputs = {"x": rng.normal(size=(steps, B, I)), "h": rng.normal(size=(B, H)), "c": rng.normal(size=(B, H))}
  out_TxBxH, state_weights = rng.normal(size=(steps, B, H)), (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
  valid_T = np.asarray(valid)

  def numpy_loss(arrays):
    w = {name: arrays[name] for name in arrays if name not in inputs}
    return numpy_window_loss(w, arrays["x"], (arrays["h"], arrays["c"]), valid_T, out_TxBxH, state_weights)

  def lm_jax_loss(arrays):
    w = {name: arrays[name] for name in arrays if name not in inputs}
    h_TxBxH, final = run_layer(CELL, w, arrays["x"], (arrays["h"], arrays["c"]), jnp.asarray(valid_T))
    return jnp.sum(out_TxBxH * h_TxBxH) + sum(jnp.sum(sw * s) for sw, s in zip(state_weights, final))

  arrays = {**w, **inputs}
  loss, grads = jax.jit(jax.value_and_grad(lm_jax_loss))(f32(arrays))
  np.testing.assert_allclose(loss, numpy_loss(arrays), rtol=1e-5, atol=1e-5)
  expected = finite_difference_grad(numpy_loss, arrays)
  assert any(name.startswith("mogrify_") for name in expected)
  for name, want in expected.items():
    np.testing.assert_allclose(grads[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_bfloat16_rounds_every_matmul_input_the_mix_included():
  """matmul_dtype=bfloat16: one step equals the float64 equations with each matmul's inputs rounded to bfloat16
  (the gating rounds' too), far closer than to float32's step."""
  bf16 = lambda a: np.asarray(a, np.float64).astype(ml_dtypes.bfloat16).astype(np.float64)
  rng = np.random.default_rng(12)
  x_1xBxI, h_BxH, c_BxH = rng.normal(size=(1, B, I)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
  for rank in (0, 2):
    w = random_weights(5, rank, seed=11)
    want = numpy_step(w, x_1xBxI[0], (h_BxH, c_BxH), matmul=lambda a, b: bf16(a) @ bf16(b))
    float32_want = numpy_step(w, x_1xBxI[0], (h_BxH, c_BxH))
    _, got = run_layer(CELL, f32(w), f32(x_1xBxI), f32((h_BxH, c_BxH)), jnp.ones(1, bool), matmul_dtype="bfloat16")
    for got_s, want_s, float32_s in zip(got, want, float32_want):
      np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
      assert np.max(np.abs(want_s - float32_s)) > 100 * np.max(np.abs(np.asarray(got_s) - want_s))


def test_low_rank_is_full_rank_with_the_product_of_its_factors():
  """Q_i = left_i @ right_i at full rank gives the low-rank layer's outputs and state."""
  low = f32(random_weights(3, 2, seed=21))
  full = {name: w for name, w in low.items() if "_w_" not in name}
  full.update({f"mogrify_{i}_w": low[f"mogrify_{i}_w_left"] @ low[f"mogrify_{i}_w_right"] for i in (1, 2, 3)})
  rng = np.random.default_rng(22)
  x_TxBxI, state = f32(rng.normal(size=(4, B, I))), f32((rng.normal(size=(B, H)), rng.normal(size=(B, H))))
  low_outputs = run_layer(CELL, low, x_TxBxI, state, jnp.ones(4, bool))
  full_outputs = run_layer(CELL, full, x_TxBxI, state, jnp.ones(4, bool))
  for got, want in zip(jax.tree.leaves(low_outputs), jax.tree.leaves(full_outputs)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def awd_model(cell: str = "mogrifier_lstm", **options) -> RNNModel:
  """2 layers, tied (the last layer emsize wide), every AWD-LSTM dropout on; a Mogrifier of 3 rounds of rank 2."""
  mogrify = {"mogrify_rounds": 3, "mogrify_rank": 2} if cell == "mogrifier_lstm" else {}
  return RNNModel(**{"vocab_size": 30, "cell": cell, "emsize": 5, "nhid": 4, "nlayers": 2, "tied": True,
                     "init_range": 0.5, "locked_dropout": True, "dropout": 0.3, "dropouti": 0.4, "dropouth": 0.2,
                     "dropoute": 0.1, "wdrop": 0.5, **mogrify, **options})


@pytest.fixture(scope="module")
def awd_params():
  """From seed 0, in one compilation: the parameters of awd_model(), of its LSTM and of its zero-round Mogrifier."""
  models = awd_model(), awd_model(cell="lstm"), awd_model(mogrify_rounds=0, mogrify_rank=0)
  return jax.jit(lambda: tuple(model.init_params(0) for model in models))()


def test_model_forward_with_awd_dropouts_and_tying_matches_float64(awd_params):
  """features, logits and carry of a 5-step training window (the window's masks handed in) against a float64
  NumPy model: masked embedding rows, locked dropouts on its output, between the layers and on the top, W_hh
  weight-dropped, the decoder the embedding."""
  model, params = awd_model(), awd_params[0]
  tokens_TxB = np.random.default_rng(4).integers(30, size=(5, 3)).astype(np.int32)
  masks = model.dropout_masks(jax.random.PRNGKey(5), 3)
  assert set(masks) == {"embedding_V", "input_BxE", "hidden_0_BxH", "output_BxH", "w_hh_0", "w_hh_1"}
  carry = tuple((jnp.full((3, size), 0.1), jnp.full((3, size), -0.2)) for size in model.sizes)

  @jax.jit
  def forward(params, masks):
    output = model.features(params, jnp.asarray(tokens_TxB), carry, train=True, masks=masks)
    return output.features_TxBxH, model.logits(params, output.features_TxBxH), output.carry

  features, logits, final_carry = forward(params, masks)
  p = {name: np.asarray(value, np.float64) for name, value in params.items()}
  m = {name: np.asarray(value, np.float64) for name, value in masks.items()}
  x_TxBxI = p["embedding"][tokens_TxB] * m["embedding_V"][tokens_TxB][..., None] * m["input_BxE"]
  want_carry = []
  for k in range(2):
    w = {name.removeprefix(f"layer_{k}_"): v for name, v in p.items() if name.startswith(f"layer_{k}_")}
    w["w_hh"] = w["w_hh"] * m[f"w_hh_{k}"]
    state, outputs = tuple(np.asarray(s, np.float64) for s in carry[k]), []
    for x_BxI in x_TxBxI:
      state = numpy_step(w, x_BxI, state)
      outputs.append(state[0])
    x_TxBxI = np.stack(outputs) * m["hidden_0_BxH" if k == 0 else "output_BxH"]
    want_carry.append(state)
  np.testing.assert_allclose(features, x_TxBxI, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, x_TxBxI @ p["embedding"].T + p["decoder_bias"], rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(final_carry), jax.tree.leaves(tuple(want_carry))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_zero_rounds_is_the_lstm_exactly(awd_params):
  """mogrify_rounds=0: the LSTM's parameters from the same seed, and the same program for a training window's loss
  and its gradient (every AWD dropout on), so the same results bit for bit."""
  _, params, zero_rounds_params = awd_params
  assert set(zero_rounds_params) == set(params)
  assert all(np.array_equal(zero_rounds_params[name], params[name]) for name in params)
  tokens_TxB = jnp.asarray(np.random.default_rng(6).integers(30, size=(6, 3)), jnp.int32)

  def loss(model, params):
    output = model.features(params, tokens_TxB[:-1], model.init_carry(3), train=True, rng=jax.random.PRNGKey(7))
    return jnp.mean(model.nll(params, output.features_TxBxH, tokens_TxB[1:])), output.carry

  program = lambda model, params: jax.jit(jax.value_and_grad(loss, argnums=1, has_aux=True), static_argnums=0).lower(
      model, params).as_text()
  lstm_program = program(awd_model(cell="lstm"), params)
  assert "while" in lstm_program and program(awd_model(mogrify_rounds=0, mogrify_rank=0), params) == lstm_program
  assert program(awd_model(), awd_params[0]) != lstm_program


def test_initialisation_is_lambs_and_leaves_the_lstm_weights_as_they_were(awd_params):
  """Biases 0; full rank ~ truncated normal of variance 1/source; low rank, each factor normal with stddev
  (1/(source k))^(1/4) cut at 2 stddev, so their product's stddev is 0.88^2 / sqrt(source); every other parameter
  the LSTM's from the same seed (the Mogrifier's are drawn last)."""
  mogrifier_params, lstm_params, _ = awd_params
  assert all(np.array_equal(mogrifier_params[name], lstm_params[name]) for name in lstm_params)

  @jax.jit
  def draw(key):
    parameters = {rank: mogrifier.parameters(2, rank, 96, 128) for rank in (0, 8)}
    return {rank: {name: init(jax.random.fold_in(key, i), shape) for i, (name, (shape, init)) in
                   enumerate(parameters[rank].items())} for rank in parameters}

  for rank, params in draw(jax.random.PRNGKey(8)).items():
    assert params["mogrify_1_b"].shape == (96,) and params["mogrify_2_b"].shape == (128,)
    assert not np.any(params["mogrify_1_b"]) and not np.any(params["mogrify_2_b"])
    if rank:
      stddev = (1 / (128 * rank)) ** 0.25
      left, right = params["mogrify_1_w_left"], params["mogrify_1_w_right"]
      assert left.shape == (128, rank) and right.shape == (rank, 96)
      assert np.abs(left).max() <= 2 * stddev and 0.9 < np.std(left) / (0.88 * stddev) < 1.1
      assert 0.65 < np.std(left @ right) * np.sqrt(128) < 0.9
    else:
      assert params["mogrify_1_w"].shape == (128, 96) and params["mogrify_2_w"].shape == (96, 128)
      assert 0.95 < np.std(params["mogrify_1_w"]) * np.sqrt(128) < 1.05


@pytest.mark.parametrize("fields, message", [
    ({"cell": "lstm", "mogrify_rounds": 3}, r"^config.model.mogrify_rounds and mogrify_rank are read by cell "
                                            r"mogrifier_lstm only, and the cell is 'lstm'; leave them at 5 and 0, or "
                                            r"pass --config.model.cell=mogrifier_lstm$"),
    ({"cell": "gru", "mogrify_rank": 8}, r"read by cell mogrifier_lstm only, and the cell is 'gru'"),
    ({"cell": "mogrifier_lstm", "mogrify_rounds": -1}, r"config.model.mogrify_rounds must be >= 0"),
    ({"cell": "mogrifier_lstm", "mogrify_rounds": 0, "mogrify_rank": 4}, r"mogrify_rounds=0 has none"),
    ({"cell": "mogrifier_lstm", "rnn_backend": "cudnn"}, r"rnn_backend='cudnn' runs the LSTM cell only"),
])
def test_config_refusals(fields, message):
  config = config_lib.reference_config()
  config.model.update(fields)
  with pytest.raises(UserError, match=message):
    config_lib.validate(config)


def test_the_defaults_pass_for_every_cell_and_a_mogrifier_does_not_export(awd_params):
  config = config_lib.reference_config()
  for cell in mogrifier.RNN_CELLS:
    config.model.cell = cell
    config_lib.validate(config)
  with pytest.raises(UserError, match="does not export to any reference; no reference model holds it"):
    convert.reference_of(awd_model(), awd_params[0])


def test_the_paper_config_is_the_largest_within_lambs_24m_parameter_budget():
  """configs/mogrifier_ptb.py: nhid as lamb's num_params rule picks it, the largest with at most 24M parameters."""
  from configs import mogrifier_ptb
  c = mogrifier_ptb.get_config()
  model = lambda nhid: dataclasses.replace(RNNModel.from_config(c.model, 10_000), nhid=nhid, emsize=nhid)
  count = lambda nhid: sum(a.size for a in jax.tree.leaves(jax.eval_shape(lambda: model(nhid).init_params(0))))
  assert c.model.nhid == c.model.emsize and count(c.model.nhid) <= 24_000_000 < count(c.model.nhid + 1)


def test_the_cpu_pair_has_the_same_number_of_parameters():
  from configs import mogrifier_ptb
  count = lambda recipe: sum(a.size for a in jax.tree.leaves(jax.eval_shape(
      lambda: RNNModel.from_config(mogrifier_ptb.get_config(recipe).model, 10_000).init_params(0))))
  assert abs(count("cpu") / count("cpu_lstm") - 1) < 1e-3


def test_rmsprop_is_lambs_adam_without_momentum():
  """Two steps of optim 'rmsprop' with weight decay, by hand: g += wd p; v = 0.999 v + 0.001 g^2;
  p -= lr g / (sqrt(v / (1 - 0.999^t)) + 1e-8)."""
  c = config_lib.reference_config().optim
  c.update(name="rmsprop", lr=0.01, clip=0.0, weight_decay=0.1)
  optimizer = optim.make_optimizer(c)
  params = {"w": jnp.array([1.0, -2.0])}
  opt_state, want, v = optimizer.init(params), np.array([1.0, -2.0]), np.zeros(2)
  for t, g in enumerate(([0.5, -0.1], [0.2, 0.3]), 1):
    updates, opt_state = optimizer.update({"w": jnp.array(g)}, opt_state, params)
    params = optax.apply_updates(params, updates)
    g = np.array(g) + 0.1 * want
    v = 0.999 * v + 0.001 * g * g
    want = want - 0.01 * g / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
  np.testing.assert_allclose(params["w"], want, rtol=1e-6)
