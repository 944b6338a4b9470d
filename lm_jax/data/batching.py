"""batchify and the truncated-BPTT windows of the reference, with static shapes for jit.

The stream of ids is cut into B contiguous columns (`batchify`). Window k starts at row
`start = k * bptt`; its inputs are rows start..start+L-1 and its targets rows start+1..start+L,
with L = min(bptt, rows - 1 - start). Inside jit every window is sliced at a fixed length
`max_len` from a copy of the data padded with `max_len` extra rows, so a short window (the last
one, or any window of variable-length BPTT) is the same program: positions t >= L are masked out
of the loss and the hidden state stops at step L. Variable-length windows run at L rounded up to a
multiple of `config.bptt_bucket` instead (steps.static_steps), one program per such length.

On the device mesh the columns are split over the devices (a column stays on its device for the
whole epoch). A batch that does not divide the device count gets dummy columns of zeros, which the
evaluation leaves out of its sums; training refuses such a batch (see train.py).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lm_jax import parallel
from lm_jax.errors import UserError


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
  """[N] -> [N // B, B]: column j is the j-th contiguous slice; the tail that does not fill B is dropped."""
  rows = len(ids) // batch_size
  return np.asarray(ids[: rows * batch_size], dtype=np.int32).reshape(batch_size, rows).T


def window_bounds(rows: int, bptt: int) -> list[tuple[int, int]]:
  """(start, length) of each non-overlapping window over `rows` batchified rows."""
  return [(start, min(bptt, rows - 1 - start)) for start in range(0, rows - 1, bptt)]


# Variable BPTT draws lengths around bptt (sd 5); windows are cut at this many steps more, so one static
# shape serves them all (a draw past it has probability ~3e-5 at bptt 70: it is cut, see below).
VARIABLE_BPTT_MARGIN = 20


def variable_windows(rows: int, bptt: int, rng: np.random.Generator) -> list[tuple[int, int, float]]:
  """AWD-LSTM's variable-length BPTT over `rows` batchified rows: (start, length, lr scale) per window.

  Each window draws bptt with probability 0.95, else bptt / 2, then seq_len = max(5, int(N(that, 5))); its
  lr is scaled by seq_len / bptt and the next window starts seq_len rows on. Two differences from the
  reference, both so that every token is trained on exactly once per epoch and one compiled program
  serves every window: a window is cut at bptt + VARIABLE_BPTT_MARGIN steps (and the next one starts
  there), and the epoch runs to the last row (the reference's loop stops when two rows remain).
  """
  windows, start, max_len = [], 0, bptt + VARIABLE_BPTT_MARGIN
  while start < rows - 1:
    mean = bptt if rng.random() < 0.95 else bptt / 2.0
    seq_len = max(5, int(rng.normal(mean, 5)))
    length = min(seq_len, max_len, rows - 1 - start)
    windows.append((start, length, seq_len / bptt))
    start += min(seq_len, max_len)
  return windows


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
  """A batchified split placed on the device mesh once, padded for fixed-length slicing."""

  padded_TxB: jax.Array  # rows + max_len rows; columns padded to a multiple of the device count; padding never scored
  rows: int               # batchified rows before padding
  max_len: int            # static window length used inside jit
  batch_size: int         # real columns; those past it are dummies

  @property
  def num_tokens_scored(self) -> int:
    return (self.rows - 1) * self.batch_size


def put_on_device(ids: np.ndarray, batch_size: int, max_len: int, name: str = "data",
                  mesh: Mesh | None = None) -> DeviceSplit:
  """batchify, pad `max_len` rows of zeros (ids past the end are masked) and dummy columns up to a
  multiple of the device count, place on `mesh` (default: every device) with columns split over it."""
  mesh = parallel.data_mesh() if mesh is None else mesh
  data_TxB = batchify(ids, batch_size)
  rows = data_TxB.shape[0]
  if rows < 2:
    raise UserError(f"the {name} split has {len(ids)} tokens, too few for batch size {batch_size}; "
                    "use a smaller batch size or more data")
  padded = np.zeros((rows + max_len, parallel.padded_columns(batch_size, mesh)), np.int32)
  padded[:rows, :batch_size] = data_TxB
  return DeviceSplit(parallel.put(padded, mesh, parallel.COLUMNS), rows, max_len, batch_size)


class Window(NamedTuple):
  """One window's tokens at the static length `max_len`, the steps past its length marked invalid."""

  inputs_TxB: jax.Array
  targets_TxB: jax.Array
  valid_T: jax.Array  # True for the window's first `length` steps


def window_at(padded_TxB: jax.Array, start: jax.Array, length: jax.Array, max_len: int) -> Window:
  """The window of `length` steps at row `start` (traced scalars) of a padded split."""
  batch = padded_TxB.shape[1]
  inputs_TxB = jax.lax.dynamic_slice(padded_TxB, (start, 0), (max_len, batch))
  targets_TxB = jax.lax.dynamic_slice(padded_TxB, (start + 1, 0), (max_len, batch))
  return Window(inputs_TxB, targets_TxB, jnp.arange(max_len) < length)
