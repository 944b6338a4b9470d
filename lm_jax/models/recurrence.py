"""One recurrent layer over a window: project every time step's input in one matmul, then
scan only the hidden-to-hidden part."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lm_jax.models.cells import Cell, State


def run_layer(cell: Cell, weights: dict[str, jax.Array], x_TxBxI: jax.Array, state: State,
              valid_T: jax.Array, unroll: int = 1) -> tuple[jax.Array, State]:
  """Returns the outputs h_TxBxH and the state after the last valid step.

  `valid_T[t]` is False for padding steps past the window's length: there the state is held, so
  the returned state is the one after exactly `length` steps.
  """
  gi_TxBxG = x_TxBxI @ weights["w_ih"] + weights["b_ih"]

  def step(state: State, inputs: tuple[jax.Array, jax.Array]) -> tuple[State, jax.Array]:
    gi_BxG, valid = inputs
    new_state = cell.step(gi_BxG, state, weights["w_hh"], weights["b_hh"])
    state = tuple(jnp.where(valid, new, old) for new, old in zip(new_state, state))
    return state, new_state[0]

  state, h_TxBxH = jax.lax.scan(step, state, (gi_TxBxG, valid_T), unroll=unroll)
  return h_TxBxH, state
