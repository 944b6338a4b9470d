"""One recurrent layer over a window: project every time step's input in one matmul, then scan
only the hidden-to-hidden part; and the layer's gradient, written out.

Why its own VJP: autodiff of the scan accumulates dW_hh and db_hh inside the backward loop, one
small matmul and one [H, G] addition per time step, and reduces the bias gradients with column sums
(single-threaded on XLA:CPU). Here the backward loop keeps only what is truly sequential, each step's
elementwise cell derivative and dgh W_hh^T; every weight gradient is then one matmul over all T*B
rows at once. The cell's own derivative still comes from autodiff (jax.vjp of cell.step), so every
cell gets this for free. Exact: the same float32 gradient, summed in a different order.

A cell that mixes x with h before the projections (`Cell.mix`, the Mogrifier LSTM) cannot have x W_ih
computed before the scan: the same scan then projects inside each step, and the backward loop also takes
the mix's derivative (jax.vjp of cell.mix), summing its weights' gradient over the steps; W_ih's and
W_hh's gradients stay one matmul each, over the mixed x and h. Cells without a mix run exactly as before.

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

# w_ih [I, G], w_hh [H, G], b_ih [G], b_hh [G]; and a mixing cell's own (cells.Cell.mix: the Mogrifier's)
Weights = dict[str, jax.Array]
PROJECTIONS = ("w_ih", "w_hh", "b_ih", "b_hh")


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
  """(h_TxBxH, final state, (the scanned inputs, each step's (gh_BxG, incoming state, mixed) stacked over T, if kept)).

  The scanned inputs are x W_ih, projected for all steps at once, or, for a cell that mixes x with h first
  (`cell.mix`), x itself, projected inside each step; `mixed` is then that step's (x' W_ih, x', h'), else ().
  """
  hoisted = cell.mix is None
  xs_TxBx_ = matmul(x_TxBxI, weights["w_ih"], dtype) if hoisted else x_TxBxI

  def step(state: State, inputs: tuple[jax.Array, jax.Array]):
    x_in, valid = inputs
    if hoisted:
      xw_BxG, h_BxH, mixed = x_in, state[0], ()
    else:
      x_BxI, h_BxH = cell.mix(weights, x_in, state[0], dtype)
      xw_BxG = matmul(x_BxI, weights["w_ih"], dtype)
      mixed = (xw_BxG, x_BxI, h_BxH)
    gh_BxG = matmul(h_BxH, weights["w_hh"], dtype) + weights["b_hh"]
    new_state = cell.step(xw_BxG + weights["b_ih"], gh_BxG, state)
    return _hold(valid, new_state, state), (new_state[0], (gh_BxG, state, mixed) if keep_step_inputs else ())

  state, (h_TxBxH, step_inputs) = _prefetched_scan(step, state, (xs_TxBx_, valid_T), unroll)
  return h_TxBxH, state, (xs_TxBx_, step_inputs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _layer(cell: Cell, unroll: int, dtype: str, weights: Weights, x_TxBxI: jax.Array, state: State,
           valid_T: jax.Array) -> tuple[jax.Array, State]:
  h_TxBxH, state, _ = _scan(cell, unroll, dtype, weights, x_TxBxI, state, valid_T, keep_step_inputs=False)
  return h_TxBxH, state


def _layer_forward(cell, unroll, dtype, weights, x_TxBxI, state, valid_T):
  h_TxBxH, final_state, (xs_TxBx_, (gh_TxBxG, states_in, mixed)) = _scan(cell, unroll, dtype, weights, x_TxBxI, state,
                                                                         valid_T, keep_step_inputs=True)
  # x W_ih, and the x and h that met W_ih and W_hh (the mixed ones, for a mixing cell)
  xw_TxBxG, fed = (xs_TxBx_, (x_TxBxI, states_in[0])) if cell.mix is None else (mixed[0], mixed[1:])
  return (h_TxBxH, final_state), (weights, x_TxBxI, valid_T, xw_TxBxG, gh_TxBxG, states_in, fed)


def _layer_backward(cell, unroll, dtype, residuals, cotangents):
  weights, x_TxBxI, valid_T, xw_TxBxG, gh_TxBxG, states_in, (x_fed_TxBxI, h_fed_TxBxH) = residuals
  dh_TxBxH, dfinal_state = cotangents
  mixing = cell.mix is not None
  own = {name: w for name, w in weights.items() if name not in PROJECTIONS}  # a mixing cell's weights

  def step_backward(carry, inputs):
    dstate, down = carry
    xw_BxG, gh_BxG, state, valid, dh_BxH, x_BxI = inputs
    gi_BxG = xw_BxG + weights["b_ih"]

    def step(gi_BxG, gh_BxG, state):
      new_state = cell.step(gi_BxG, gh_BxG, state)
      return _hold(valid, new_state, state), new_state[0]

    dgi_BxG, dgh_BxG, dstate = jax.vjp(step, gi_BxG, gh_BxG, state)[1]((dstate, dh_BxH))
    # The h that met W_hh (the incoming h, or the mixed one) also made gh = h W_hh + b_hh. dgh W_hh^T contracts
    # both operands along their contiguous G axis: faster on XLA:CPU than a product with a transposed copy of W_hh.
    dh_fed_BxH = einsum("bg,hg->bh", dgh_BxG, weights["w_hh"], dtype)
    if not mixing:
      return ((dstate[0] + dh_fed_BxH,) + dstate[1:], down), (dgi_BxG, dgh_BxG, ())
    # Mixed inside the step: x' W_ih's gradient goes back through the mix to x, h and the mix's own weights,
    # whose gradient is summed over the steps here.
    dx_fed_BxI = einsum("bg,ig->bi", dgi_BxG, weights["w_ih"], dtype)
    mix = lambda own, x_BxI, h_BxH: cell.mix(own, x_BxI, h_BxH, dtype)
    down_step, dx_BxI, dh_in_BxH = jax.vjp(mix, own, x_BxI, state[0])[1]((dx_fed_BxI, dh_fed_BxH))
    down = jax.tree.map(jnp.add, down, down_step)
    return ((dstate[0] + dh_in_BxH,) + dstate[1:], down), (dgi_BxG, dgh_BxG, dx_BxI)

  (dstate, down), (dgi_TxBxG, dgh_TxBxG, dx_TxBxI) = jax.lax.scan(
      step_backward, (dfinal_state, jax.tree.map(jnp.zeros_like, own)),
      (xw_TxBxG, gh_TxBxG, states_in, valid_T, dh_TxBxH, x_TxBxI if mixing else ()), reverse=True)
  rows = lambda a: a.reshape(-1, a.shape[-1])  # [T, B, ...] -> [T*B, ...]
  # Bias gradients as products with ones: a column sum is single-threaded on XLA:CPU.
  ones_N = jnp.ones(rows(dgi_TxBxG).shape[0], dgi_TxBxG.dtype)
  dweights = {"w_ih": matmul(rows(x_fed_TxBxI).T, rows(dgi_TxBxG), dtype), "b_ih": ones_N @ rows(dgi_TxBxG),
              "w_hh": matmul(rows(h_fed_TxBxH).T, rows(dgh_TxBxG), dtype), "b_hh": ones_N @ rows(dgh_TxBxG), **down}
  if not mixing:
    dx_TxBxI = matmul(dgi_TxBxG, weights["w_ih"].T, dtype)
  return dweights, dx_TxBxI, dstate, None


_layer.defvjp(_layer_forward, _layer_backward)
