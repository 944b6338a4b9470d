"""Recurrent cells as pure functions, with PyTorch's equations and gate order.

A cell step takes both projections of one time step, the input's `gi_BxG = x W_ih + b_ih` and the
hidden state's `gh_BxG = h W_hh + b_hh` (recurrence.py computes them: gi for all time steps at once
outside the scan, gh inside it), and the carried state, and returns the new state. State is a tuple
of [B, H] arrays whose first entry is the output h. Keeping the matmuls out of the cells leaves each
step elementwise, so recurrence.py can differentiate it on its own.

A cell may also `mix` its input x and the incoming h before the projections (the Mogrifier LSTM,
mogrifier.py): then gi = x' W_ih + b_ih and gh = h' W_hh + b_hh from the mixed pair, and recurrence.py
projects the input inside each step. CELLS holds PyTorch's cells, which mix nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

State = tuple[jax.Array, ...]
StepFn = Callable[[jax.Array, jax.Array, State], State]
# (the layer's weights, x_BxI, h_BxH, matmul_dtype) -> the mixed (x_BxI, h_BxH) that meet W_ih and W_hh
MixFn = Callable[[dict[str, jax.Array], jax.Array, jax.Array, str], tuple[jax.Array, jax.Array]]


def lstm_step(gi_BxG: jax.Array, gh_BxG: jax.Array, state: State) -> State:
  """Gates i, f, g, o; c' = f*c + i*g; h' = o*tanh(c')."""
  _, c_BxH = state
  i, f, g, o = jnp.split(gi_BxG + gh_BxG, 4, axis=-1)
  c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c_BxH), c_BxH


def gru_step(gi_BxG: jax.Array, gh_BxG: jax.Array, state: State) -> State:
  """Gates r, z, n; n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h' = (1-z)*n + z*h."""
  (h_BxH,) = state
  gi_r, gi_z, gi_n = jnp.split(gi_BxG, 3, axis=-1)
  gh_r, gh_z, gh_n = jnp.split(gh_BxG, 3, axis=-1)
  r = jax.nn.sigmoid(gi_r + gh_r)
  z = jax.nn.sigmoid(gi_z + gh_z)
  n = jnp.tanh(gi_n + r * gh_n)
  return ((1.0 - z) * n + z * h_BxH,)


def _elman_step(activation: Callable[[jax.Array], jax.Array]) -> StepFn:
  def step(gi_BxG: jax.Array, gh_BxG: jax.Array, state: State) -> State:
    """h' = act(W_ih x + b_ih + W_hh h + b_hh)."""
    return (activation(gi_BxG + gh_BxG),)

  return step


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str
  num_gates: int    # G = num_gates * H columns in W_ih and W_hh
  num_states: int   # arrays in the carried state (LSTM: h and c)
  step: StepFn
  mix: MixFn | None = None  # None: x and h meet W_ih and W_hh as they are (the input projection is hoisted)


CELLS: dict[str, Cell] = {
    "lstm": Cell("lstm", 4, 2, lstm_step),
    "gru": Cell("gru", 3, 1, gru_step),
    "rnn_tanh": Cell("rnn_tanh", 1, 1, _elman_step(jnp.tanh)),
    "rnn_relu": Cell("rnn_relu", 1, 1, _elman_step(jax.nn.relu)),
}
