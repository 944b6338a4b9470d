"""One recurrent layer over a window: project every time step's input in one matmul, then scan
only the hidden-to-hidden part; and the layer's gradient, written out.

Why its own VJP: autodiff of the scan accumulates dW_hh and db_hh inside the backward loop, one
small matmul and one [H, G] addition per time step, and reduces the bias gradients with column sums
(single-threaded on XLA:CPU). Here the backward loop keeps only what is truly sequential, each step's
elementwise cell derivative and dgh W_hh^T; every weight gradient is then one matmul over all T*B
rows at once. The cell's own derivative still comes from autodiff (jax.vjp of cell.step), so every
cell gets this for free. Exact: the same float32 gradient, summed in a different order.

With matmul_dtype "bfloat16" (precision.py) every matmul here, forward and backward, takes bfloat16
inputs; the bias gradients (sums, written as products with ones) stay float32.

Two choices shape the forward loop for XLA:CPU (docs/performance.md has the measurements):
- The input projection leaves its bias out (xw = x W_ih) and each step adds b_ih to its slice: the
  addition is the same, but it fuses into the step's elementwise work instead of a pass over [T, B, G].
- Each step's inputs are read one iteration ahead and carried (`_prefetched_scan`). XLA:CPU emits
  scalar, unvectorised code for a fusion that slices a dynamic slice more than once, which is what a
  GRU step does to its row of xw (the r, z and n gates); a carried row is a plain buffer.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from lm_jax.models.cells import Cell, State
from lm_jax.models.precision import einsum, matmul

Weights = dict[str, jax.Array]  # w_ih [I, G], w_hh [H, G], b_ih [G], b_hh [G]


def run_layer(cell: Cell, weights: Weights, x_TxBxI: jax.Array, state: State, valid_T: jax.Array,
              unroll: int = 1, matmul_dtype: str = "float32") -> tuple[jax.Array, State]:
  """Returns the outputs h_TxBxH and the state after the last valid step.

  `valid_T[t]` is False for padding steps past the window's length: there the state is held, so
  the returned state is the one after exactly `length` steps. `unroll` applies to the forward scan;
  the backward loop stays rolled (unrolling it measured slower on XLA:CPU). `matmul_dtype`: precision.py.
  """
  # A plain dict (flax hands a FrozenDict), the structure the gradient below is built in.
  return _layer(cell, unroll, matmul_dtype, dict(weights), x_TxBxI, state, valid_T)


def _hold(valid: jax.Array, new_state: State, state: State) -> State:
  return tuple(jnp.where(valid, new, old) for new, old in zip(new_state, state))


def _prefetched_scan(step: Callable, carry, xs, unroll: int):
  """lax.scan(step, carry, xs), with step t's slice of xs read at step t - 1 and carried in."""
  steps = jax.tree.leaves(xs)[0].shape[0]
  at = lambda t: jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, t, keepdims=False), xs)

  def prefetching_step(carry_and_inputs, t: jax.Array):
    carry, inputs = carry_and_inputs
    carry, outputs = step(carry, inputs)
    return (carry, at(jnp.minimum(t + 1, steps - 1))), outputs

  (carry, _), outputs = jax.lax.scan(prefetching_step, (carry, at(0)), jnp.arange(steps), unroll=unroll)
  return carry, outputs


def _scan(cell: Cell, unroll: int, dtype: str, weights: Weights, x_TxBxI: jax.Array, state: State,
          valid_T: jax.Array, keep_step_inputs: bool):
  """(h_TxBxH, final state, (xw_TxBxG, each step's (gh_BxG, incoming state) stacked over T, if kept))."""
  xw_TxBxG = matmul(x_TxBxI, weights["w_ih"], dtype)

  def step(state: State, inputs: tuple[jax.Array, jax.Array]):
    xw_BxG, valid = inputs
    gh_BxG = matmul(state[0], weights["w_hh"], dtype) + weights["b_hh"]
    new_state = cell.step(xw_BxG + weights["b_ih"], gh_BxG, state)
    return _hold(valid, new_state, state), (new_state[0], (gh_BxG, state) if keep_step_inputs else ())

  state, (h_TxBxH, step_inputs) = _prefetched_scan(step, state, (xw_TxBxG, valid_T), unroll)
  return h_TxBxH, state, (xw_TxBxG, step_inputs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _layer(cell: Cell, unroll: int, dtype: str, weights: Weights, x_TxBxI: jax.Array, state: State,
           valid_T: jax.Array) -> tuple[jax.Array, State]:
  h_TxBxH, state, _ = _scan(cell, unroll, dtype, weights, x_TxBxI, state, valid_T, keep_step_inputs=False)
  return h_TxBxH, state


def _layer_forward(cell, unroll, dtype, weights, x_TxBxI, state, valid_T):
  h_TxBxH, final_state, (xw_TxBxG, (gh_TxBxG, states_in)) = _scan(cell, unroll, dtype, weights, x_TxBxI, state,
                                                                  valid_T, keep_step_inputs=True)
  return (h_TxBxH, final_state), (weights, x_TxBxI, valid_T, xw_TxBxG, gh_TxBxG, states_in)


def _layer_backward(cell, unroll, dtype, residuals, cotangents):
  weights, x_TxBxI, valid_T, xw_TxBxG, gh_TxBxG, states_in = residuals
  dh_TxBxH, dfinal_state = cotangents

  def step_backward(dstate: State, inputs):
    xw_BxG, gh_BxG, state, valid, dh_BxH = inputs
    gi_BxG = xw_BxG + weights["b_ih"]

    def step(gi_BxG, gh_BxG, state):
      new_state = cell.step(gi_BxG, gh_BxG, state)
      return _hold(valid, new_state, state), new_state[0]

    dgi_BxG, dgh_BxG, dstate = jax.vjp(step, gi_BxG, gh_BxG, state)[1]((dstate, dh_BxH))
    # The incoming h also made gh = h W_hh + b_hh. dgh W_hh^T contracts both operands along their
    # contiguous G axis: faster on XLA:CPU than a product with a transposed copy of W_hh.
    return (dstate[0] + einsum("bg,hg->bh", dgh_BxG, weights["w_hh"], dtype),) + dstate[1:], (dgi_BxG, dgh_BxG)

  dstate, (dgi_TxBxG, dgh_TxBxG) = jax.lax.scan(step_backward, dfinal_state,
                                                 (xw_TxBxG, gh_TxBxG, states_in, valid_T, dh_TxBxH),
                                                 reverse=True)
  rows = lambda a: a.reshape(-1, a.shape[-1])  # [T, B, ...] -> [T*B, ...]
  # Bias gradients as products with ones: a column sum is single-threaded on XLA:CPU.
  ones_N = jnp.ones(rows(dgi_TxBxG).shape[0], dgi_TxBxG.dtype)
  dweights = {"w_ih": matmul(rows(x_TxBxI).T, rows(dgi_TxBxG), dtype), "b_ih": ones_N @ rows(dgi_TxBxG),
              "w_hh": matmul(rows(states_in[0]).T, rows(dgh_TxBxG), dtype), "b_hh": ones_N @ rows(dgh_TxBxG)}
  return dweights, matmul(dgi_TxBxG, weights["w_ih"].T, dtype), dstate, None


_layer.defvjp(_layer_forward, _layer_backward)
