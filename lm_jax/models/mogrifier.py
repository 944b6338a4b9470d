"""The Mogrifier LSTM (Melis, Kočiský & Blunsom, ICLR 2020): before each LSTM step the input x and the previous
output h gate each other for `rounds` rounds, then the LSTM step runs on the gated pair.

Rounds count from 1, as in the paper; odd rounds gate x with h, even rounds gate h with x, each reading the other's
latest value (x goes first):
  round i odd:   x <- 2 sigmoid(h Q_i + b_i) * x     Q_i [H, I], b_i [I]
  round i even:  h <- 2 sigmoid(x R_i + b_i) * h     R_i [I, H], b_i [H]
With `rank` k > 0 each matrix is a product of two factors, [src, k] @ [k, dst] (Q_i = Q_i,left Q_i,right).

The rules not in the paper's equations follow its code, deepmind/lamb (tiled_lstm.py, `_do_feature_masking`):
- every round has a bias, zero at init;
- a full-rank matrix starts truncated normal with variance 1/src (lamb's fan-in variance scaling, cell_init_factor
  1); low rank, both factors normal with stddev (1 / (src k)) ** (1/4) truncated at 2 stddev (not rescaled, as TF's
  truncated_normal), aiming their product at variance 1/src (the truncation leaves 0.6/src);
- the gated x and h feed the LSTM's gates only: the carried state is the LSTM step's (h, c), and so is the output.
The LSTM step itself is lm_jax's (cells.lstm_step, PyTorch's equations), not lamb's (capped input gate, forget bias 1),
so that zero rounds are exactly cell=lstm.

The gated x depends on h, so x W_ih cannot be computed for all time steps before the scan: the cell's `mix` makes
recurrence.py project inside each step. With zero rounds nothing is mixed, and `layer_cell` gives the LSTM itself
(projection hoisted, the same program as cell=lstm).

Parameters, per layer k and round i (the other layer weights as cell=lstm's): layer_k_mogrify_i_w at full rank, or
layer_k_mogrify_i_w_left and layer_k_mogrify_i_w_right at low rank; and layer_k_mogrify_i_b.
"""

from __future__ import annotations

import jax
import ml_collections

from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS, Cell, lstm_step
from lm_jax.models.precision import matmul

NAME = "mogrifier_lstm"
DEFAULT_ROUNDS, DEFAULT_RANK = 5, 0  # config.model.mogrify_rounds / mogrify_rank (lamb's PTB model: 5 rounds, rank 84)


def _rounds(weights: dict[str, jax.Array]) -> int:
  return sum(name.startswith("mogrify_") and name.endswith("_b") for name in weights)


def _gate_logits(weights: dict[str, jax.Array], i: int, source: jax.Array, matmul_dtype: str) -> jax.Array:
  if f"mogrify_{i}_w" in weights:
    projected = matmul(source, weights[f"mogrify_{i}_w"], matmul_dtype)
  else:
    projected = matmul(matmul(source, weights[f"mogrify_{i}_w_left"], matmul_dtype), weights[f"mogrify_{i}_w_right"],
                       matmul_dtype)
  return projected + weights[f"mogrify_{i}_b"]


def mogrify(weights: dict[str, jax.Array], x_BxI: jax.Array, h_BxH: jax.Array,
            matmul_dtype: str) -> tuple[jax.Array, jax.Array]:
  """The gated (x, h) after as many rounds as `weights` holds (the layer's weights, or only its mogrify_* ones)."""
  for i in range(1, _rounds(weights) + 1):
    if i % 2:
      x_BxI = 2.0 * jax.nn.sigmoid(_gate_logits(weights, i, h_BxH, matmul_dtype)) * x_BxI
    else:
      h_BxH = 2.0 * jax.nn.sigmoid(_gate_logits(weights, i, x_BxI, matmul_dtype)) * h_BxH
  return x_BxI, h_BxH


MOGRIFIER_LSTM = Cell(NAME, CELLS["lstm"].num_gates, CELLS["lstm"].num_states, lstm_step, mix=mogrify)

# The rnn family's cells: PyTorch's (cells.CELLS, which the converters, the classifier and the benchmarks' PyTorch
# references share) and the Mogrifier, which PyTorch has not.
RNN_CELLS: dict[str, Cell] = {**CELLS, NAME: MOGRIFIER_LSTM}


def layer_cell(name: str, rounds: int) -> Cell:
  """The cell a layer runs: with zero rounds the Mogrifier is the LSTM, its input projection hoisted."""
  return CELLS["lstm"] if name == NAME and rounds == 0 else RNN_CELLS[name]


def _truncated_normal(stddev: float) -> jax.nn.initializers.Initializer:
  # jax's truncated_normal, as TF's: cut at 2 stddev, not rescaled.
  return jax.nn.initializers.truncated_normal(stddev)


def parameters(rounds: int, rank: int, size_in: int, size: int) -> dict[str, tuple[tuple[int, ...], object]]:
  """One layer's Mogrifier parameters: name (without the layer_k_ prefix) -> (shape, initializer)."""
  params = {}
  for i in range(1, rounds + 1):
    source, target = (size, size_in) if i % 2 else (size_in, size)
    if rank:
      stddev = (1.0 / (source * rank)) ** 0.25
      params[f"mogrify_{i}_w_left"] = ((source, rank), _truncated_normal(stddev))
      params[f"mogrify_{i}_w_right"] = ((rank, target), _truncated_normal(stddev))
    else:
      params[f"mogrify_{i}_w"] = ((source, target), jax.nn.initializers.variance_scaling(1.0, "fan_in",
                                                                                          "truncated_normal"))
    params[f"mogrify_{i}_b"] = ((target,), jax.nn.initializers.zeros)
  return params


def validate(m: ml_collections.ConfigDict) -> None:
  """config.model.mogrify_rounds / mogrify_rank: non-negative, and set only where they are read."""
  for name in ("mogrify_rounds", "mogrify_rank"):
    if m[name] < 0:
      raise UserError(f"config.model.{name} must be >= 0 (got {m[name]}); pass e.g. --config.model.{name}=0")
  if m.cell != NAME and (m.mogrify_rounds, m.mogrify_rank) != (DEFAULT_ROUNDS, DEFAULT_RANK):
    raise UserError(f"config.model.mogrify_rounds and mogrify_rank are read by cell {NAME} only, and the cell is "
                    f"{m.cell!r}; leave them at {DEFAULT_ROUNDS} and {DEFAULT_RANK}, or pass "
                    f"--config.model.cell={NAME}")
  if m.mogrify_rank and not m.mogrify_rounds:
    raise UserError(f"config.model.mogrify_rank={m.mogrify_rank} factorises the Mogrifier's matrices, and "
                    "mogrify_rounds=0 has none; pass --config.model.mogrify_rank=0, or some rounds")

