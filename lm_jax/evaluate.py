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
from typing import Callable, NamedTuple

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
  """Owns the compiled evaluation of `model` at windows of `bptt`, over `mesh` (default: every device). Every
  score comes from one scan over segments (`_segment_scan`); each compiled program is built once per shape."""

  def __init__(self, model: LanguageModel, bptt: int, mesh: Mesh | None = None):
    self.model, self.bptt = model, bptt
    self.mesh = parallel.data_mesh() if mesh is None else mesh
    self._programs: dict[tuple, Callable] = {}

  def mean_nll(self, params: Params, split: DeviceSplit) -> float:
    """Sum of token NLL / tokens scored over `split` (the host sums the windows in float64)."""
    return self.evaluate(params, split).mean_nll

  def evaluate(self, params: Params, split: DeviceSplit, *, cache: CachePointer | None = None,
               dynamic: DynamicEval | None = None, stats: GradStats | None = None) -> EvalResult:
    """Mean NLL over `split` with the cache pointer and/or dynamic evaluation (`stats` from
    dynamic_eval.gradient_statistics for its 'rms' rule); neither: the plain evaluation, spread over the mesh.
    `params` is never modified."""
    if cache is None and dynamic is None:
      starts_W, lengths_W = np.array(window_bounds(split.rows, self.bptt), np.int32).T
      args = (params, starts_W, lengths_W, split.padded_TxB, split.batch_size)
      nll_sums_W, seconds = _timed(self._program(("plain",), self._plain_on_mesh), args)
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

  def _program(self, key: tuple, build: Callable[[], Callable]) -> Callable:
    """The jitted program for `key`, built on first use (jit then compiles once per shape)."""
    if key not in self._programs:
      self._programs[key] = jax.jit(build())
    return self._programs[key]

  def _plain_on_mesh(self) -> Callable:
    """The plain evaluation as a per-device program: each device scans its own columns; the windows' sums are
    added over devices."""
    scan = functools.partial(_segment_scan, model=self.model, segment=self.bptt, window=0, per_token=False,
                             rule=None)

    def nll_sum_per_window(params, starts_W, lengths_W, data_TxB, batch_size):
      local = data_TxB.shape[1]
      # The split's dummy columns (padding to a multiple of the device count) are not scored.
      scored_B = jax.lax.axis_index(DATA) * local + jnp.arange(local) < batch_size
      no_cache = np.zeros(1, np.float32)
      sums_WxG = scan(params, None, {}, no_cache, no_cache, starts_W, lengths_W, data_TxB, scored_B)
      return jax.lax.psum(sums_WxG[:, 0], DATA)

    return jax.shard_map(nll_sum_per_window, mesh=self.mesh,
                         in_specs=(REPLICATED, REPLICATED, REPLICATED, COLUMNS, REPLICATED),
                         out_specs=REPLICATED, check_vma=False)

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
    """The methods as one program on the split's devices (no shard_map): dynamic evaluation's update is the
    whole batch's."""
    segment = self._segment(dynamic)
    starts_W, lengths_W = np.array(window_bounds(split.rows, segment), np.int32).T
    hyper = (dynamic or DynamicEval()).hyper()
    static = dict(model=self.model, segment=segment, window=window, per_token=per_token,
                  rule=None if dynamic is None else dynamic.rule)
    scored_B = np.arange(split.padded_TxB.shape[1]) < split.batch_size  # dummy columns (mesh padding) are not scored
    args = (params, stats, hyper, theta_G, lam_G, starts_W, lengths_W, split.padded_TxB, scored_B)
    program = self._program(("methods", *sorted(static.items(), key=lambda kv: kv[0])[1:]),
                            lambda: functools.partial(_segment_scan, **static))
    return _timed(program, args)


def _timed(program, args) -> tuple[jax.Array, float]:
  """program(*args) compiled ahead (once per shape: jit keeps it), then run and timed to completion."""
  compiled = program.lower(*args).compile()
  begin = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  return out, time.perf_counter() - begin


def _per_position(scores_WxTxB: np.ndarray, split: DeviceSplit, segment: int) -> np.ndarray:
  """The windows' valid steps in order, the real columns: [rows - 1, B]."""
  rows = [scores_WxTxB[w, :length] for w, (_, length) in enumerate(window_bounds(split.rows, segment))]
  return np.concatenate(rows, axis=0)[:, :split.batch_size]


def _segment_scan(params: Params, stats: GradStats | None, hyper: dict, theta_G: jax.Array, lam_G: jax.Array,
                  starts_W: jax.Array, lengths_W: jax.Array, data_TxB: jax.Array, scored_B: jax.Array, *,
                  model: LanguageModel, segment: int, window: int, per_token: bool, rule: str | None) -> jax.Array:
  """One scan over the segments, every score of every evaluation. State: (params, model carry, cache). Each
  segment's token scores [G, T, B] (G cache settings; G = 1 and the model's NLL without a cache) use the
  parameters before the segment's own update (`rule`: dynamic evaluation; None: none). `scored_B` marks the
  columns scored. Out: per segment the scores' sums [W, G], or with `per_token` the scores [W, G, T, B]."""

  def score_segment(p, carry, cache, start, length):
    seg = window_at(data_TxB, start, length, segment)
    # The update's loss is dynamiceval.py's criterion: the mean token NLL of the model alone.
    loss, aux = window_loss(model, p, carry, seg, train=False, scored_B=scored_B)
    if window:
      # The mixture is scored, not differentiated: the update adapts the model, not the cache.
      scored_TxB = seg.valid_T[:, None] & scored_B
      score_GxTxB, cache = cache_pointer.score(cache, jax.lax.stop_gradient(aux.output.features_TxBxH),
                                               seg.targets_TxB, jax.lax.stop_gradient(aux.nll_TxB), start, length,
                                               theta_G, lam_G)
      score_GxTxB = score_GxTxB * scored_TxB
    else:
      score_GxTxB = aux.nll_TxB[None]
    return loss, (score_GxTxB, aux.carry, cache)

  def one_segment(state, start_and_length):
    p, carry, cache = state
    if rule is None:
      _, (score_GxTxB, carry, cache) = score_segment(p, carry, cache, *start_and_length)
    else:
      grads, (score_GxTxB, carry, cache) = jax.grad(score_segment, has_aux=True)(p, carry, cache, *start_and_length)
      p = dynamic_eval.update(rule, p, params, grads, stats, hyper)
    return (p, carry, cache), (score_GxTxB if per_token else jnp.sum(score_GxTxB, axis=(1, 2)))

  columns = data_TxB.shape[1]
  cache0 = ()
  if window:
    features = jax.eval_shape(lambda: model.features(params, data_TxB[:1], model.init_carry(columns)).features_TxBxH)
    cache0 = cache_pointer.init_state(window, columns, features)
  _, out = jax.lax.scan(one_segment, (params, model.init_carry(columns), cache0), (starts_W, lengths_W))
  return out
