"""The Evaluator: scores whole splits by the reference's rule (sum of token NLL / tokens scored, the
state carried from window to window from zeros), all windows in one compiled scan per call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lm_jax import parallel
from lm_jax.data.batching import DeviceSplit, window_at, window_bounds
from lm_jax.loss import window_loss
from lm_jax.models.interface import LanguageModel, Params
from lm_jax.parallel import COLUMNS, DATA, REPLICATED


class Evaluator:
  """Owns the compiled evaluation of `model` at windows of `bptt`, over `mesh` (default: every device)."""

  def __init__(self, model: LanguageModel, bptt: int, mesh: Mesh | None = None):
    self.model, self.bptt = model, bptt

    def nll_sum_per_window(params: Params, starts_W: jax.Array, lengths_W: jax.Array, batch_size: jax.Array,
                           data_TxB: jax.Array) -> jax.Array:
      local_batch = data_TxB.shape[1]
      # The split's dummy columns (padding to a multiple of the device count) are not scored.
      scored_B = jax.lax.axis_index(DATA) * local_batch + jnp.arange(local_batch) < batch_size

      def one_window(carry, start_and_length):
        window = window_at(data_TxB, *start_and_length, bptt)
        _, aux = window_loss(model, params, carry, window, train=False, scored_B=scored_B)
        return aux.carry, aux.nll_sum

      _, nll_sums_W = jax.lax.scan(one_window, model.init_carry(local_batch), (starts_W, lengths_W))
      return jax.lax.psum(nll_sums_W, DATA)

    per_device = jax.shard_map(nll_sum_per_window, mesh=parallel.data_mesh() if mesh is None else mesh,
                               in_specs=(REPLICATED, REPLICATED, REPLICATED, REPLICATED, COLUMNS),
                               out_specs=REPLICATED, check_vma=False)
    self._nll_sum_per_window = jax.jit(per_device)

  def mean_nll(self, params: Params, split: DeviceSplit) -> float:
    """Sum of token NLL / tokens scored over `split` (the host sums the windows in float64)."""
    starts_W, lengths_W = np.array(window_bounds(split.rows, self.bptt), np.int32).T
    nll_sums_W = self._nll_sum_per_window(params, starts_W, lengths_W, split.batch_size, split.padded_TxB)
    return float(np.sum(np.asarray(nll_sums_W, np.float64)) / split.num_tokens_scored)
