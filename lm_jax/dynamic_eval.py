"""Dynamic evaluation (Krause et al. 2018), as benkrause/dynamic-evaluation's dynamiceval.py does it.

The split is cut into segments of `bptt` (5) positions. Each segment is first scored with the current
parameters, then its mean token NLL's gradient g updates them. The RMS rule ('rms', the reference's):

  MS            = sqrt(mean over training segments of g_train^2)     (per parameter, `gradient_statistics`)
  decay         = min(lamb * MS / mean_over_tensors(mean(MS)), 1)     (the reference clips MS/gsum at 1/lamb)
  theta        <- theta + decay * (theta_0 - theta) - lr * g / (MS + epsilon)

theta_0 being the trained parameters. The 'sgd' rule is plain SGD dynamic evaluation (the paper's
baseline; dynamiceval.py has no flag for it): theta <- theta - lr * g, no statistics, no decay.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.data.batching import DeviceSplit, window_at, window_bounds
from lm_jax.errors import UserError
from lm_jax.loss import window_loss
from lm_jax.models.interface import LanguageModel, Params

RULES = ("rms", "sgd")
# dynamiceval.py's defaults (tuned for AWD-LSTM on PTB).
DEFAULT_LR = {"rms": 5e-5, "sgd": 0.1}


@dataclasses.dataclass(frozen=True)
class DynamicEval:
  """dynamiceval.py's --lr, --lamb, --epsilon and --bptt, and the update rule."""

  rule: str = "rms"
  lr: float = DEFAULT_LR["rms"]
  lamb: float = 0.002
  epsilon: float = 2e-5
  bptt: int = 5

  def validate(self) -> None:
    """Raises UserError naming the bad value and the fix."""
    if self.rule not in RULES:
      raise UserError(f"unknown dynamic evaluation rule {self.rule!r}; use one of {', '.join(RULES)}")
    if self.lr < 0:
      raise UserError(f"--dynamic_lr must be >= 0 (got {self.lr}); pass e.g. --dynamic_lr=5e-5")
    if self.lamb < 0:
      raise UserError(f"--dynamic_lamb must be >= 0 (got {self.lamb}); pass e.g. --dynamic_lamb=0.002")
    if self.epsilon <= 0:
      raise UserError(f"--dynamic_epsilon must be > 0 (got {self.epsilon}); pass e.g. --dynamic_epsilon=2e-5")
    if self.bptt <= 0:
      raise UserError(f"--dynamic_bptt must be > 0 (got {self.bptt}); pass e.g. --dynamic_bptt=5")

  def hyper(self) -> dict[str, jax.Array]:
    """The traced hyperparameters (a new lr or lamb does not recompile)."""
    return {name: jnp.float32(getattr(self, name)) for name in ("lr", "lamb", "epsilon")}


class GradStats(NamedTuple):
  ms: Params          # per parameter: sqrt of the mean squared gradient over the training segments
  ms_mean: jax.Array  # the reference's gsum: the mean over tensors of mean(ms)


def statistics_segments(rows: int, bptt: int, max_segments: int | None = None) -> np.ndarray:
  """(start, length) of gradstat()'s segments: its loop stops at start >= rows - 2."""
  bounds = [(start, length) for start, length in window_bounds(rows, bptt) if start < rows - 2]
  return np.array(bounds[:max_segments] if max_segments else bounds, np.int32).reshape(-1, 2)


@functools.partial(jax.jit, static_argnames=("model", "bptt"))
def _squared_gradient_sum(model: LanguageModel, bptt: int, params: Params, starts_S: jax.Array,
                          lengths_S: jax.Array, data_TxB: jax.Array, batch_size: jax.Array) -> Params:
  scored_B = jnp.arange(data_TxB.shape[1]) < batch_size

  def one_segment(state, start_and_length):
    carry, sum_sq = state
    window = window_at(data_TxB, *start_and_length, bptt)
    grads, aux = jax.grad(lambda p: window_loss(model, p, carry, window, train=False, scored_B=scored_B),
                          has_aux=True)(params)
    return (aux.carry, jax.tree.map(lambda s, g: s + g * g, sum_sq, grads)), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  (_, sum_sq), _ = jax.lax.scan(one_segment, (model.init_carry(data_TxB.shape[1]), zeros), (starts_S, lengths_S))
  return sum_sq


def gradient_statistics(model: LanguageModel, params: Params, train: DeviceSplit, bptt: int,
                        max_segments: int | None = None) -> GradStats:
  """dynamiceval.py's gradstat(): the RMS of the mean-loss gradient over the training split's segments of
  `bptt` (the state carried, no dropout), at the batch `train` was placed with (the reference's 100)."""
  starts_S, lengths_S = statistics_segments(train.rows, bptt, max_segments).T
  sum_sq = _squared_gradient_sum(model, bptt, params, starts_S, lengths_S, train.padded_TxB, train.batch_size)
  ms = jax.tree.map(lambda s: jnp.sqrt(s / len(starts_S)), sum_sq)
  leaves = jax.tree.leaves(ms)
  return GradStats(ms, sum(jnp.mean(leaf) for leaf in leaves) / len(leaves))


def no_statistics(params: Params) -> GradStats:
  """What the 'sgd' rule is given (it reads none)."""
  return GradStats(jax.tree.map(jnp.ones_like, params), jnp.float32(1.0))


def update(rule: str, params: Params, params0: Params, grads: Params, stats: GradStats,
           hyper: dict[str, Any]) -> Params:
  """One dynamic-evaluation step from the gradient of the segment just scored."""
  lr, lamb, epsilon = hyper["lr"], hyper["lamb"], hyper["epsilon"]
  if rule == "sgd":
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)

  def rms(p, p0, g, ms):
    # lamb * min(MS / gsum, 1 / lamb), written so that lamb == 0 means no decay.
    decay = jnp.minimum(lamb * ms / stats.ms_mean, 1.0)
    return p + decay * (p0 - p) - lr * g / (ms + epsilon)

  return jax.tree.map(rms, params, params0, grads, stats.ms)
