"""The Evaluator: scores whole splits by the reference's rule (sum of token NLL / tokens scored, the
state carried from window to window from zeros), all windows in one compiled scan per call.

`Evaluator.evaluate` adds the evaluation-time methods: the continuous cache pointer (lm_jax/cache_pointer.py)
and dynamic evaluation (lm_jax/dynamic_eval.py), alone or together, in one compiled scan over the split's
segments that carries the model's state, the cache and (dynamic) the adapted parameters. Each segment is
scored before the update that uses it. The methods run as one jitted program (no shard_map): on one
device, or however XLA lays out a split placed on a larger mesh.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lm_jax import cache_pointer, dynamic_eval, parallel
from lm_jax.cache_pointer import CachePointer
from lm_jax.data.batching import DeviceSplit, window_at, window_bounds
from lm_jax.dynamic_eval import DynamicEval, GradStats
from lm_jax.loss import window_loss
from lm_jax.models.interface import LanguageModel, Params
from lm_jax.parallel import COLUMNS, DATA, REPLICATED


class EvalResult(NamedTuple):
  mean_nll: float  # sum of token NLL / tokens scored
  tokens: int      # tokens scored
  seconds: float   # the compiled pass's run time (compilation excluded)

  @property
  def tokens_per_second(self) -> float:
    return self.tokens / self.seconds


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

  def evaluate(self, params: Params, split: DeviceSplit, *, cache: CachePointer | None = None,
               dynamic: DynamicEval | None = None, stats: GradStats | None = None) -> EvalResult:
    """Mean NLL over `split` with the cache pointer and/or dynamic evaluation (`stats` from
    dynamic_eval.gradient_statistics for its 'rms' rule); neither: the plain evaluation. `params` is
    never modified."""
    if cache is None and dynamic is None:
      starts_W, lengths_W = np.array(window_bounds(split.rows, self.bptt), np.int32).T
      args = (params, starts_W, lengths_W, split.batch_size, split.padded_TxB)
      nll_sums_W, seconds = _timed(self._nll_sum_per_window, args)
    else:
      nll_sums_W, seconds = self._method_pass(params, split, cache, dynamic, stats, per_token=False)
    mean = float(np.sum(np.asarray(nll_sums_W, np.float64)) / split.num_tokens_scored)
    return EvalResult(mean, split.num_tokens_scored, seconds)

  def token_nll(self, params: Params, split: DeviceSplit, *, cache: CachePointer | None = None,
                dynamic: DynamicEval | None = None, stats: GradStats | None = None) -> np.ndarray:
    """-log p of every scored token, [rows - 1, B] (column b's positions in order), under the methods."""
    scores_WxTxB, _ = self._method_pass(params, split, cache, dynamic, stats, per_token=True)
    return _per_position(np.asarray(scores_WxTxB)[:, 0], split, self._segment(dynamic))

  def cache_search(self, params: Params, split: DeviceSplit, window: int, thetas: tuple[float, ...],
                   lambdas: tuple[float, ...]) -> np.ndarray:
    """Mean NLL [len(thetas), len(lambdas)] of the cache at `window` for every (theta, lambda) pair, all
    in one pass (the model runs once; only the mixture is repeated per pair)."""
    theta_G, lam_G = (np.array(g, np.float32).ravel() for g in np.meshgrid(thetas, lambdas, indexing="ij"))
    for theta, lam in zip(theta_G, lam_G):
      CachePointer(window, float(theta), float(lam)).validate()
    CachePointer(window, 0.0, 0.0).check_split(split.rows, "given")
    sums_WxG, _ = self._run(params, split, window, theta_G, lam_G, None, None, per_token=False)
    sums_G = np.sum(np.asarray(sums_WxG, np.float64), axis=0) / split.num_tokens_scored
    return sums_G.reshape(len(thetas), len(lambdas))

  def _segment(self, dynamic: DynamicEval | None) -> int:
    return self.bptt if dynamic is None else dynamic.bptt

  def _method_pass(self, params, split, cache, dynamic, stats, per_token):
    window, theta_G, lam_G = 0, np.zeros(1, np.float32), np.zeros(1, np.float32)
    if cache is not None:
      cache.validate()
      cache.check_split(split.rows, "given")
      window, theta_G, lam_G = cache.window, np.float32([cache.theta]), np.float32([cache.lam])
    if dynamic is not None:
      dynamic.validate()
      if stats is None:
        if dynamic.rule == "rms":
          raise ValueError("the 'rms' rule needs stats=dynamic_eval.gradient_statistics(...)")
        stats = dynamic_eval.no_statistics(params)
    out, seconds = self._run(params, split, window, theta_G, lam_G, dynamic, stats, per_token)
    return (out if per_token else np.asarray(out)[:, 0]), seconds

  def _run(self, params, split, window, theta_G, lam_G, dynamic, stats, per_token):
    segment = self._segment(dynamic)
    starts_W, lengths_W = np.array(window_bounds(split.rows, segment), np.int32).T
    hyper = (dynamic or DynamicEval()).hyper()
    static = dict(model=self.model, segment=segment, window=window, per_token=per_token,
                  rule=None if dynamic is None else dynamic.rule)
    args = (params, stats, hyper, theta_G, lam_G, starts_W, lengths_W, split.padded_TxB, split.batch_size)
    return _timed(functools.partial(_method_scan, **static), args)


def _timed(fn, args) -> tuple[jax.Array, float]:
  """fn(*args) compiled ahead, then run and timed to completion."""
  compiled = jax.jit(fn).lower(*args).compile()
  begin = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  return out, time.perf_counter() - begin


def _per_position(scores_WxTxB: np.ndarray, split: DeviceSplit, segment: int) -> np.ndarray:
  """The windows' valid steps in order, the real columns: [rows - 1, B]."""
  rows = [scores_WxTxB[w, :length] for w, (_, length) in enumerate(window_bounds(split.rows, segment))]
  return np.concatenate(rows, axis=0)[:, :split.batch_size]


def _method_scan(params: Params, stats: GradStats | None, hyper: dict, theta_G: jax.Array, lam_G: jax.Array,
                 starts_W: jax.Array, lengths_W: jax.Array, data_TxB: jax.Array, batch_size: jax.Array, *,
                 model: LanguageModel, segment: int, window: int, per_token: bool, rule: str | None) -> jax.Array:
  """One scan over the segments. State: (params, model carry, cache). Each segment's token scores
  [G, T, B] (G cache settings) use the parameters before the segment's own update. Out: per segment the
  scores' sums [W, G], or with `per_token` the scores [W, G, T, B]."""
  columns = data_TxB.shape[1]
  scored_B = jnp.arange(columns) < batch_size  # dummy columns (mesh padding) are never scored

  def score_segment(p, carry, cache, start, length):
    seg = window_at(data_TxB, start, length, segment)
    out = model.features(p, seg.inputs_TxB, carry, seg.valid_T)
    nll_TxB = model.nll(p, out.features_TxBxH, seg.targets_TxB)
    scored_TxB = jnp.broadcast_to(seg.valid_T[:, None] & scored_B, nll_TxB.shape)
    # The update's loss: dynamiceval.py's criterion, the mean token NLL of the model alone.
    loss = jnp.sum(nll_TxB * scored_TxB) / jnp.sum(scored_TxB)
    if window:
      # The mixture is scored, not differentiated: the update adapts the model, not the cache.
      score_GxTxB, cache = cache_pointer.score(cache, jax.lax.stop_gradient(out.features_TxBxH), seg.targets_TxB,
                                               jax.lax.stop_gradient(nll_TxB), start, length, theta_G, lam_G)
    else:
      score_GxTxB = nll_TxB[None]
    return loss, (score_GxTxB * scored_TxB, out.carry, cache)

  def one_segment(state, start_and_length):
    p, carry, cache = state
    if rule is None:
      _, (score_GxTxB, carry, cache) = score_segment(p, carry, cache, *start_and_length)
    else:
      grads, (score_GxTxB, carry, cache) = jax.grad(score_segment, has_aux=True)(p, carry, cache, *start_and_length)
      p = dynamic_eval.update(rule, p, params, grads, stats, hyper)
    return (p, carry, cache), (score_GxTxB if per_token else jnp.sum(score_GxTxB, axis=(1, 2)))

  cache0 = ()
  if window:
    features = jax.eval_shape(lambda: model.features(params, data_TxB[:1], model.init_carry(columns)).features_TxBxH)
    cache0 = cache_pointer.init_state(window, columns, features)
  _, out = jax.lax.scan(one_segment, (params, model.init_carry(columns), cache0), (starts_W, lengths_W))
  return out
