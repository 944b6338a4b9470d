"""The pure steps: truncated BPTT, masked short windows, and evaluation perplexity against an
independent float64 computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax import steps
from lm_jax.data.batching import batchify, put_on_device, window_at
from lm_jax.evaluate import Evaluator
from lm_jax.loss import window_loss
from lm_jax.models.rnn_model import RNNModel

V, B, BPTT = 40, 4, 6


def tiny_model(cell: str = "lstm", dropout: float = 0.0) -> RNNModel:
  return RNNModel(vocab_size=V, cell=cell, emsize=8, nhid=12, nlayers=2, dropout=dropout)


def stream(n: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, V, n).astype(np.int32)


def sgd_lr1_no_clip() -> optax.GradientTransformation:
  return optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)


def eval_loss(model, params, carry, split, start, length, **kwargs):
  """window_loss in evaluation mode on the window of `length` at `start`: (loss, LossAux)."""
  return window_loss(model, params, carry, window_at(split.padded_TxB, start, length, BPTT), train=False, **kwargs)


def train_state(model, params, carry, step: int) -> steps.TrainState:
  """A state the step may donate: copies of `params` and `carry`, dropout key 0, at `step`."""
  params, carry = jax.tree.map(jnp.array, (params, carry))
  return steps.TrainState(params, sgd_lr1_no_clip().init(params), carry, jax.random.PRNGKey(0), jnp.int32(step))


def logits_and_carry(model, params, tokens_TxB, carry):
  output = model.features(params, tokens_TxB, carry)
  return model.logits(params, output.features_TxBxH), output.carry


def test_gradient_does_not_cross_the_window_boundary():
  """Truncated BPTT: the gradient of window 2's loss, however window 1's state was computed (inside the
  same differentiated function or not), is the gradient with that state held constant; the train step's
  too. Full backpropagation through both windows, by the model alone, differs."""
  model = tiny_model()
  params = model.init_params(0)
  ids = stream(B * 20)
  split = put_on_device(ids, B, BPTT)
  step = steps.make_train_step(model, sgd_lr1_no_clip(), BPTT)
  carry0 = model.init_carry(B)

  carry1 = eval_loss(model, params, carry0, split, 0, BPTT)[1].carry
  new_state, _ = step(train_state(model, params, carry1, 1), steps.WindowAt(BPTT, BPTT), split.padded_TxB)
  step_grads = jax.tree.map(lambda old, new: old - new, params, new_state.params)
  loss_w2 = lambda p, carry: eval_loss(model, p, carry, split, BPTT, BPTT)[0]
  # Jitted: op by op, each gradient's primitives would compile one at a time (14 s of the suite).
  truncated = jax.jit(jax.grad(loss_w2))(params, carry1)
  chained = jax.jit(jax.grad(lambda p: loss_w2(p, eval_loss(model, p, carry0, split, 0, BPTT)[1].carry)))(params)

  data_TxB = batchify(ids, B)
  def full_bptt(p):  # both windows' 12 steps in one pass of the model; the NLL of the second window's 6
    out = model.features(p, jnp.asarray(data_TxB[:2 * BPTT]), carry0)
    return jnp.mean(model.nll(p, out.features_TxBxH, jnp.asarray(data_TxB[1:2 * BPTT + 1]))[BPTT:])

  np.testing.assert_allclose(jax.jit(full_bptt)(params), loss_w2(params, carry1), rtol=1e-6)  # the same loss value
  full = jax.jit(jax.grad(full_bptt))(params)
  for name in params:
    np.testing.assert_allclose(step_grads[name], truncated[name], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(chained[name], truncated[name], rtol=1e-5, atol=1e-7)
  assert not np.allclose(full["layer_0_w_hh"], truncated["layer_0_w_hh"], rtol=1e-3, atol=1e-6)


def test_short_window_equals_the_unpadded_computation():
  """The last window (length 3 of max 6) scores exactly its 3 steps and carries the state after 3."""
  model = tiny_model("gru")
  params = model.init_params(1)
  ids = stream(B * 10, seed=1)
  split = put_on_device(ids, B, BPTT)
  carry0 = model.init_carry(B)
  loss, aux = eval_loss(model, params, carry0, split, 6, 3)
  nll_sum, carry = aux.nll_sum, aux.carry

  data_TxB = batchify(ids, B)
  logits, expected_carry = logits_and_carry(model, params, data_TxB[6:9], carry0)
  logp = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
  nll = -np.take_along_axis(np.asarray(logp), data_TxB[7:10][..., None], axis=-1)
  np.testing.assert_allclose(nll_sum, nll.sum(), rtol=1e-5)
  np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)
  np.testing.assert_allclose(carry[0], expected_carry[0], rtol=1e-6, atol=1e-6)


def test_sum_over_time_loss_is_length_times_the_mean():
  model = tiny_model()
  params = model.init_params(2)
  split = put_on_device(stream(B * 10), B, BPTT)
  carry0 = model.init_carry(B)
  mean, _ = eval_loss(model, params, carry0, split, 0, 5)
  summed, _ = eval_loss(model, params, carry0, split, 0, 5, reduction="sum_over_time")
  np.testing.assert_allclose(summed, 5 * mean, rtol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "rnn_relu"])
def test_evaluation_perplexity_is_exp_of_the_mean_nll_computed_independently(cell):
  """Windows of 6 with the state carried equal one pass over the whole split; NLL in float64."""
  model = tiny_model(cell)
  params = model.init_params(3)
  ids = stream(B * 33 + 3, seed=4)  # 33 rows: windows 6,6,6,6,6,2 and a dropped tail
  data_TxB = batchify(ids, B)
  logits, _ = logits_and_carry(model, params, data_TxB[:-1], model.init_carry(B))
  logp = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
  expected_mean_nll = -np.take_along_axis(np.asarray(logp), data_TxB[1:][..., None], axis=-1).mean()

  split = put_on_device(ids, B, BPTT)
  got = Evaluator(model, BPTT).mean_nll(params, split)
  np.testing.assert_allclose(got, expected_mean_nll, rtol=1e-6)
  assert split.num_tokens_scored == 32 * B
  np.testing.assert_allclose(np.exp(got), np.exp(expected_mean_nll), rtol=1e-5)


def test_dropout_masks_depend_on_the_step_and_vanish_in_evaluation():
  model = tiny_model(dropout=0.5)
  params = model.init_params(0)
  split = put_on_device(stream(B * 10), B, BPTT)
  carry0 = model.init_carry(B)
  step = steps.make_train_step(model, sgd_lr1_no_clip(), BPTT)
  losses = []
  for step_number in (0, 1, 0):
    _, metrics = step(train_state(model, params, carry0, step_number), steps.WindowAt(0, BPTT), split.padded_TxB)
    losses.append(float(metrics["loss"]))
  assert losses[0] == losses[2] and losses[0] != losses[1]  # fold_in(rng, step): reproducible, per step
  eval_a = eval_loss(model, params, carry0, split, 0, BPTT)[0]
  eval_b = eval_loss(model, params, carry0, split, 0, BPTT)[0]
  assert float(eval_a) == float(eval_b)


def test_fused_decoder_nll_and_its_gradients_match_the_plain_definition_in_float64():
  from lm_jax.models.softmax_nll import decoder_nll, plain_decoder_nll

  rng = np.random.default_rng(7)
  h, w, b = rng.normal(size=(9, 5)), rng.normal(size=(30, 5)), rng.normal(size=30)
  targets = rng.integers(0, 30, 9)
  assert len(set(targets)) < len(targets)  # repeated targets: the backward's scatter-adds must sum them
  weights = rng.uniform(size=9)  # a masked/weighted sum, as the loss uses it

  # The plain definition itself, against NumPy: logsumexp(logits) - logit[target].
  logits = h @ w.T + b
  by_hand = np.log(np.exp(logits).sum(-1)) - logits[np.arange(9), targets]
  with jax.enable_x64():
    np.testing.assert_allclose(plain_decoder_nll(h, w, b, jnp.asarray(targets)), by_hand, rtol=1e-12)
    reference = lambda h, w, b: jnp.sum(weights * plain_decoder_nll(h, w, b, jnp.asarray(targets)))
    expected_loss, expected_grads = jax.value_and_grad(reference, argnums=(0, 1, 2))(h, w, b)
  fused = lambda h, w, b: jnp.sum(weights * decoder_nll(h, w, b, jnp.asarray(targets)))
  loss, grads = jax.value_and_grad(fused, argnums=(0, 1, 2))(*(jnp.asarray(x, jnp.float32) for x in (h, w, b)))
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  for got, want in zip(grads, expected_grads):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_word_language_model_dropout_placement_and_scaling():
  """The reference's dropout: on the output (kept units scaled 1/(1-p), a fresh mask per position), on the
  embedding (a 1-layer model's raw output changes), never on the carried state, and none in evaluation."""
  p = 0.5
  model = RNNModel(vocab_size=V, cell="lstm", emsize=8, nhid=64, nlayers=1, dropout=p)
  params = model.init_params(4)
  tokens_TxB = jnp.asarray(stream(BPTT * 32).reshape(BPTT, 32))
  carry0 = model.init_carry(32)
  train = model.features(params, tokens_TxB, carry0, train=True, rng=jax.random.PRNGKey(1))
  evaluation = model.features(params, tokens_TxB, carry0)
  plain = RNNModel(vocab_size=V, cell="lstm", emsize=8, nhid=64, nlayers=1, dropout=0.0)
  np.testing.assert_array_equal(evaluation.features_TxBxH, plain.features(params, tokens_TxB, carry0).features_TxBxH)

  out_TxBxH, raw_TxBxH = np.asarray(train.features_TxBxH), np.asarray(train.aux["top_raw_TxBxH"])
  dropped = out_TxBxH == 0
  assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / dropped.size)
  np.testing.assert_allclose(out_TxBxH[~dropped], raw_TxBxH[~dropped] / (1 - p), rtol=1e-6)
  assert 0 < np.all(dropped, axis=0).mean() < 0.1  # per position (p^T = 1/64 of units), not one mask (p)
  # The embedding was dropped too: the layer's raw output differs from evaluation's.
  assert not np.allclose(raw_TxBxH, np.asarray(evaluation.aux["top_raw_TxBxH"]), atol=1e-3)
  # The carried state is the layer's own (raw) state: its h is the last raw output, never a dropped one.
  np.testing.assert_array_equal(np.asarray(train.carry[0][0]), raw_TxBxH[-1])


def test_sum_over_time_through_the_train_step_is_length_times_the_mean_gradient():
  model = tiny_model()
  params = model.init_params(5)
  split = put_on_device(stream(B * 10), B, BPTT)
  carry0 = model.init_carry(B)
  changes = {}
  for reduction in ("mean", "sum_over_time"):
    step = steps.make_train_step(model, sgd_lr1_no_clip(), BPTT, reduction=reduction)
    new_state, metrics = step(train_state(model, params, carry0, 0), steps.WindowAt(0, 5), split.padded_TxB)
    changes[reduction] = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b), new_state.params, params)
  for name in params:  # T = 5 valid steps
    np.testing.assert_allclose(changes["sum_over_time"][name], 5 * changes["mean"][name], rtol=2e-3, atol=1e-7)
