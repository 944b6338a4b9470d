"""The pure, jit-compiled steps: one training window, and a whole split's evaluation.

Both slice their windows by index from the split already on the device, so one compiled program
serves every window of every epoch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lm_jax import optim
from lm_jax.data.batching import slice_window, valid_steps_mask
from lm_jax.models.cells import State
from lm_jax.models.rnn_model import RNNModel

Params = Any
Metrics = dict[str, jax.Array]


def window_loss(model: RNNModel, params: Params, carry: State, data_TxB: jax.Array, start: jax.Array,
                length: jax.Array, max_len: int, train: bool, dropout_rng: jax.Array | None = None,
                sum_over_time: bool = False) -> tuple[jax.Array, tuple[jax.Array, State]]:
  """Token NLL over the window's `length` valid steps, averaged over tokens (or, with
  `sum_over_time`, summed over time and averaged over the batch); aux: (summed NLL, carried state)."""
  inputs_TxB, targets_TxB = slice_window(data_TxB, start, max_len)
  valid_T = valid_steps_mask(length, max_len)
  rngs = {"dropout": dropout_rng} if train else {}
  nll_TxB, carry = model.apply({"params": params}, inputs_TxB, targets_TxB, carry, valid_T, train=train, rngs=rngs,
                               method=RNNModel.nll)
  nll_sum = jnp.sum(nll_TxB * valid_T[:, None])
  tokens_averaged = inputs_TxB.shape[1] if sum_over_time else length * inputs_TxB.shape[1]
  return nll_sum / tokens_averaged, (nll_sum, carry)


def make_train_step(model: RNNModel, optimizer: optax.GradientTransformation, max_len: int,
                    sum_over_time: bool = False) -> Callable:
  """(params, opt_state, carry, rng, step, start, length, data) -> (params, opt_state, carry, metrics)."""

  def train_step(params: Params, opt_state: optax.OptState, carry: State, rng: jax.Array, step: jax.Array,
                 start: jax.Array, length: jax.Array, data_TxB: jax.Array):
    # Truncated BPTT: the state enters as a constant, so no gradient reaches earlier windows.
    carry = jax.lax.stop_gradient(carry)
    dropout_rng = jax.random.fold_in(rng, step)
    grad_fn = jax.value_and_grad(window_loss, argnums=1, has_aux=True)
    (_, (nll_sum, carry)), grads = grad_fn(model, params, carry, data_TxB, start, length, max_len, True,
                                           dropout_rng, sum_over_time)
    loss = nll_sum / (length * data_TxB.shape[1])  # Reported per token whatever the reduction.
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, carry, {"loss": loss, "grad_norm": optim.global_norm(grads)}

  return jax.jit(train_step, donate_argnums=(0, 1, 2))


def make_eval_split(model: RNNModel, max_len: int) -> Callable:
  """(params, carry0, starts, lengths, data) -> summed NLL per window, all windows in one scan."""

  def eval_split(params: Params, carry: State, starts_W: jax.Array, lengths_W: jax.Array, data_TxB: jax.Array):
    def one_window(carry: State, window: tuple[jax.Array, jax.Array]):
      start, length = window
      _, (nll_sum, carry) = window_loss(model, params, carry, data_TxB, start, length, max_len, False)
      return carry, nll_sum

    _, nll_sums_W = jax.lax.scan(one_window, carry, (starts_W, lengths_W))
    return nll_sums_W

  return jax.jit(eval_split)
