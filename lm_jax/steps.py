"""The pure, jit-compiled steps: one training window, and a whole split's evaluation.

Both are per-device programs under jax.shard_map over the 'data' mesh (parallel.py): each device runs
the model on its own columns of the split and its own slice of the carried state; the gradients, the
loss and the evaluation sums are combined across devices with lax.pmean / lax.psum. Both slice their
windows by index from the split already on the devices, so one compiled program serves every window
of every epoch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lm_jax import optim, parallel
from lm_jax.data.batching import slice_window, valid_steps_mask
from lm_jax.models.cells import State
from lm_jax.models.rnn_model import RNNModel, zero_carry
from lm_jax.parallel import CARRY, COLUMNS, DATA, REPLICATED

Params = Any
Metrics = dict[str, jax.Array]


def window_loss(model: RNNModel, params: Params, carry: State, data_TxB: jax.Array, start: jax.Array,
                length: jax.Array, max_len: int, train: bool, dropout_rng: jax.Array | None = None,
                sum_over_time: bool = False,
                real_B: jax.Array | None = None) -> tuple[jax.Array, tuple[jax.Array, State]]:
  """Token NLL over the window's `length` valid steps, averaged over tokens (or, with
  `sum_over_time`, summed over time and averaged over the batch); aux: (summed NLL, carried state).
  `real_B` marks the columns to score; dummy columns (evaluation padding) stay out of the sum."""
  inputs_TxB, targets_TxB = slice_window(data_TxB, start, max_len)
  valid_T = valid_steps_mask(length, max_len)
  rngs = {"dropout": dropout_rng} if train else {}
  nll_TxB, carry = model.apply({"params": params}, inputs_TxB, targets_TxB, carry, valid_T, train=train, rngs=rngs,
                               method=RNNModel.nll)
  scored_TxB = valid_T[:, None] if real_B is None else valid_T[:, None] & real_B
  nll_sum = jnp.sum(nll_TxB * scored_TxB)
  tokens_averaged = inputs_TxB.shape[1] if sum_over_time else length * inputs_TxB.shape[1]
  return nll_sum / tokens_averaged, (nll_sum, carry)


def make_train_step(model: RNNModel, optimizer: optax.GradientTransformation, max_len: int,
                    sum_over_time: bool = False, mesh: Mesh | None = None) -> Callable:
  """(params, opt_state, carry, rng, step, start, length, data) -> (params, opt_state, carry, metrics) over
  `mesh` (default: every device): data and carry split by column, everything else replicated."""
  mesh = parallel.data_mesh() if mesh is None else mesh

  def train_step(params: Params, opt_state: optax.OptState, carry: State, rng: jax.Array, step: jax.Array,
                 start: jax.Array, length: jax.Array, data_TxB: jax.Array):
    # Truncated BPTT: the state enters as a constant, so no gradient reaches earlier windows.
    carry = jax.lax.stop_gradient(carry)
    # A different dropout mask on every device and at every step, all reproducible from the seed.
    dropout_rng = jax.random.fold_in(jax.random.fold_in(rng, step), jax.lax.axis_index(DATA))
    grad_fn = jax.value_and_grad(window_loss, argnums=1, has_aux=True)
    (_, (nll_sum, carry)), grads = grad_fn(model, params, carry, data_TxB, start, length, max_len, True,
                                           dropout_rng, sum_over_time)
    # Every device scores as many tokens as the others, so the mean of their means is the mean over the
    # whole batch: after pmean every device holds the global gradient, and the clip sees its norm.
    # One device: no pmean, which XLA:CPU still runs as a copy of every gradient (~8 ms/step at WikiText-2 size).
    grads = jax.lax.pmean(grads, DATA) if mesh.shape[DATA] > 1 else grads
    loss = jax.lax.pmean(nll_sum / (length * data_TxB.shape[1]), DATA)  # Reported per token whatever the reduction.
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, carry, {"loss": loss, "grad_norm": optim.global_norm(grads)}

  # check_vma=False: the gradient of a replicated input then comes back per device, for pmean to average
  # as under pmap (with the check on, JAX would hand it back already summed over devices).
  per_device = jax.shard_map(train_step, mesh=mesh,
                             in_specs=(REPLICATED, REPLICATED, CARRY, REPLICATED, REPLICATED, REPLICATED, REPLICATED,
                                       COLUMNS),
                             out_specs=(REPLICATED, REPLICATED, CARRY, REPLICATED), check_vma=False)
  compiled_step = jax.jit(per_device, donate_argnums=(0, 1, 2))

  def train_step_on_mesh(params: Params, opt_state: optax.OptState, carry: State, *window):
    # The step returns its state on the mesh. State made elsewhere (a fresh init on one device) moves there
    # before the first call, so that call compiles the one program every later call runs.
    if not parallel.on_mesh((params, opt_state, carry), mesh):
      params, opt_state = parallel.replicate((params, opt_state), mesh)
      carry = jax.tree.map(lambda x: parallel.put(x, mesh, CARRY), carry)
    return compiled_step(params, opt_state, carry, *window)

  return train_step_on_mesh


def make_eval_split(model: RNNModel, max_len: int, mesh: Mesh | None = None) -> Callable:
  """(params, starts, lengths, batch_size, data) -> summed NLL per window over the first `batch_size`
  columns, all windows in one scan from a zero state, over `mesh` (default: every device)."""

  def eval_split(params: Params, starts_W: jax.Array, lengths_W: jax.Array, batch_size: jax.Array,
                 data_TxB: jax.Array):
    local_batch = data_TxB.shape[1]
    real_B = jax.lax.axis_index(DATA) * local_batch + jnp.arange(local_batch) < batch_size

    def one_window(carry: State, window: tuple[jax.Array, jax.Array]):
      start, length = window
      _, (nll_sum, carry) = window_loss(model, params, carry, data_TxB, start, length, max_len, False, real_B=real_B)
      return carry, nll_sum

    carry = zero_carry(model.cell, model.nlayers, local_batch, model.nhid)
    _, nll_sums_W = jax.lax.scan(one_window, carry, (starts_W, lengths_W))
    return jax.lax.psum(nll_sums_W, DATA)

  per_device = jax.shard_map(eval_split, mesh=parallel.data_mesh() if mesh is None else mesh,
                             in_specs=(REPLICATED, REPLICATED, REPLICATED, REPLICATED, COLUMNS), out_specs=REPLICATED,
                             check_vma=False)
  return jax.jit(per_device)
