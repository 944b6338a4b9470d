"""Each cell, and a layer's hand-written gradient, against float64 re-implementations of PyTorch's equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.cells import CELLS
from lm_jax.models.recurrence import run_layer

B, I, H = 3, 5, 4


def numpy_step(cell: str, x, state, w_ih, w_hh, b_ih, b_hh, xp=np, matmul=lambda a, b: a @ b):
  """PyTorch's documented equations, weights in PyTorch's [G*H, in] layout, float64; `xp` = np, or
  jnp to differentiate them; `matmul` for the two products (test_precision rounds their inputs)."""
  sigmoid = lambda v: 1.0 / (1.0 + xp.exp(-v))
  gi = matmul(x, w_ih.T) + b_ih
  gh = matmul(state[0], w_hh.T) + b_hh
  if cell == "lstm":
    h, c = state
    i, f, g, o = xp.split(gi + gh, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * xp.tanh(g)
    return sigmoid(o) * xp.tanh(c), c
  if cell == "gru":
    (h,) = state
    r_gi, z_gi, n_gi = xp.split(gi, 3, axis=-1)
    r_gh, z_gh, n_gh = xp.split(gh, 3, axis=-1)
    r = sigmoid(r_gi + r_gh)
    z = sigmoid(z_gi + z_gh)
    n = xp.tanh(n_gi + r * n_gh)
    return ((1 - z) * n + z * h,)
  act = xp.tanh if cell == "rnn_tanh" else (lambda v: xp.maximum(v, 0.0))
  return (act(gi + gh),)


def random_layer(cell: str, seed: int):
  rng = np.random.default_rng(seed)
  g = CELLS[cell].num_gates * H
  w = dict(w_ih=rng.normal(size=(g, I)), w_hh=rng.normal(size=(g, H)), b_ih=rng.normal(size=g), b_hh=rng.normal(size=g))
  state = tuple(rng.normal(size=(B, H)) for _ in range(CELLS[cell].num_states))
  return w, state


def as_lm_jax(w):
  """PyTorch layout -> lm_jax's x @ W layout, float32."""
  return {"w_ih": jnp.asarray(w["w_ih"].T, jnp.float32), "w_hh": jnp.asarray(w["w_hh"].T, jnp.float32),
          "b_ih": jnp.asarray(w["b_ih"], jnp.float32), "b_hh": jnp.asarray(w["b_hh"], jnp.float32)}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_layer_matches_float64_numpy_over_time(cell):
  w, state = random_layer(cell, seed=0)
  x_TxBxI = np.random.default_rng(1).normal(size=(7, B, I))
  expected_h, expected_state = [], state
  for x in x_TxBxI:
    expected_state = numpy_step(cell, x, expected_state, **w)
    expected_h.append(expected_state[0])
  h_TxBxH, final = run_layer(CELLS[cell], as_lm_jax(w), jnp.asarray(x_TxBxI, jnp.float32),
                             tuple(jnp.asarray(s, jnp.float32) for s in state), jnp.ones(7, bool), unroll=2)
  np.testing.assert_allclose(np.asarray(h_TxBxH), np.stack(expected_h), rtol=1e-5, atol=1e-5)
  for got, want in zip(final, expected_state):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_steps_hold_the_state(cell):
  """With 4 valid steps out of 7, the returned state is the one after exactly 4 steps."""
  w, state = random_layer(cell, seed=2)
  x_TxBxI = np.random.default_rng(3).normal(size=(7, B, I))
  expected_state = state
  for x in x_TxBxI[:4]:
    expected_state = numpy_step(cell, x, expected_state, **w)
  _, final = run_layer(CELLS[cell], as_lm_jax(w), jnp.asarray(x_TxBxI, jnp.float32),
                       tuple(jnp.asarray(s, jnp.float32) for s in state), jnp.arange(7) < 4)
  for got, want in zip(final, expected_state):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_layer_gradient_matches_float64_autodiff_of_the_equations(cell):
  """run_layer's own VJP against autodiff of a plain float64 loop over PyTorch's equations: every
  weight, the input and the initial state, with padding steps and a gradient on the final state."""
  w, state = random_layer(cell, seed=4)
  rng = np.random.default_rng(5)
  x_TxBxI = rng.normal(size=(7, B, I))
  valid_T = np.arange(7) < 5
  out_weights = rng.normal(size=(7, B, H))
  state_weights = [rng.normal(size=(B, H)) for _ in state]

  def reference(w, x_TxBxI, state):
    loss = 0.0
    for t in range(7):
      new_state = numpy_step(cell, x_TxBxI[t], state, **w, xp=jnp)
      loss += jnp.sum(out_weights[t] * new_state[0])
      state = tuple(jnp.where(valid_T[t], new, old) for new, old in zip(new_state, state))
    return loss + sum(jnp.sum(sw * s) for sw, s in zip(state_weights, state))

  def lm_jax_loss(w, x_TxBxI, state):
    h_TxBxH, final = run_layer(CELLS[cell], w, x_TxBxI, state, jnp.asarray(valid_T))
    return jnp.sum(out_weights * h_TxBxH) + sum(jnp.sum(sw * s) for sw, s in zip(state_weights, final))

  with jax.enable_x64():
    expected = jax.grad(reference, argnums=(0, 1, 2))(w, x_TxBxI, state)
  got = jax.grad(lm_jax_loss, argnums=(0, 1, 2))(as_lm_jax(w), jnp.asarray(x_TxBxI, jnp.float32),
                                                  tuple(jnp.asarray(s, jnp.float32) for s in state))
  for name in w:  # lm_jax keeps its weight matrices transposed
    want = expected[0][name].T if name.startswith("w_") else expected[0][name]
    np.testing.assert_allclose(got[0][name], want, rtol=1e-4, atol=1e-5, err_msg=name)
  np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-5)
  for got_s, want_s in zip(got[2], expected[2]):
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("length", [0, 3])
def test_window_shorter_than_the_scan_matches_a_loop_over_its_length(cell, length):
  """A window of `length` valid steps in a 7-step scan (the padded last window): the outputs of the valid
  steps, the final state and every gradient equal those of a float64 loop that runs only `length` steps.
  Nothing may flow from the padding: its inputs get a zero gradient; with length 0 the state passes through."""
  w, state = random_layer(cell, seed=6)
  rng = np.random.default_rng(7)
  x_TxBxI = rng.normal(size=(7, B, I))
  out_weights = rng.normal(size=(7, B, H))
  state_weights = [rng.normal(size=(B, H)) for _ in state]

  def reference(w, x_TxBxI, state):
    loss = 0.0
    for t in range(length):
      state = numpy_step(cell, x_TxBxI[t], state, **w, xp=jnp)
      loss += jnp.sum(out_weights[t] * state[0])
    return loss + sum(jnp.sum(sw * s) for sw, s in zip(state_weights, state)), state

  def lm_jax_loss(w, x_TxBxI, state):
    h_TxBxH, final = run_layer(CELLS[cell], w, x_TxBxI, state, jnp.arange(7) < length)
    loss = jnp.sum(out_weights[:length] * h_TxBxH[:length])
    return loss + sum(jnp.sum(sw * s) for sw, s in zip(state_weights, final)), final

  with jax.enable_x64():
    (_, expected_final), expected = jax.value_and_grad(reference, argnums=(0, 1, 2), has_aux=True)(w, x_TxBxI, state)
  (_, final), got = jax.value_and_grad(lm_jax_loss, argnums=(0, 1, 2), has_aux=True)(
      as_lm_jax(w), jnp.asarray(x_TxBxI, jnp.float32), tuple(jnp.asarray(s, jnp.float32) for s in state))
  for got_s, want_s in zip(final, expected_final):
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
  for name in w:
    want = expected[0][name].T if name.startswith("w_") else expected[0][name]
    np.testing.assert_allclose(got[0][name], want, rtol=1e-4, atol=1e-5, err_msg=name)
  np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-5)
  assert not np.any(np.asarray(got[1][length:]))  # the padding's inputs
  for got_s, want_s in zip(got[2], expected[2]):
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-5)

def test_init_follows_the_reference_ranges():
  from lm_jax.models.rnn_model import RNNModel
  model = RNNModel(vocab_size=500, cell="gru", emsize=64, nhid=100, nlayers=2, init_range=0.1)
  params = model.init_params(0)
  assert params["embedding"].shape == (500, 64) and params["layer_0_w_ih"].shape == (64, 300)
  assert params["layer_1_w_ih"].shape == (100, 300) and params["decoder_weight"].shape == (500, 100)
  for name in ("embedding", "decoder_weight"):
    assert 0.095 < np.abs(params[name]).max() <= 0.1
  bound = 1 / np.sqrt(100)
  assert 0.95 * bound < np.abs(params["layer_1_w_hh"]).max() <= bound
  assert np.all(params["decoder_bias"] == 0)
  tied = RNNModel(vocab_size=50, emsize=8, nhid=8, nlayers=1, tied=True)
  tied_params = tied.init_params(0)
  assert "decoder_weight" not in tied_params
  h = jnp.ones((1, 1, 8))
  np.testing.assert_allclose(tied.logits(tied_params, h)[0, 0],
                             tied_params["embedding"] @ np.ones(8) + tied_params["decoder_bias"], rtol=1e-5, atol=1e-6)
