"""lm-jax-evaluate: perplexity of a workdir's best model on a split, by the reference's rule; with
--cache_* and/or --dynamic_eval, the table `method | valid ppl | test ppl | tokens/s` of the plain model
and the evaluation-time methods (docs/evaluation_methods.md). It only reads the workdir.

  lm-jax-evaluate --workdir=runs/ptb --cache_preset=ptb --dynamic_eval
"""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Split to score (plain evaluation).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Score this directory's split instead of the training data.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Evaluation batch size: default 10 (the reference's), "
                                   "1 with a cache or dynamic evaluation (pointer.py's and dynamiceval.py's).")
_CACHE_PRESET = flags.DEFINE_enum("cache_preset", None, ["ptb", "wt2"], "Turn the cache pointer on with "
                                  "awd-lstm-lm's README values for PTB (500, 1.0, 0.1) or WikiText-2 (3785, 0.662, 0.1279).")
_CACHE_WINDOW = flags.DEFINE_integer("cache_window", None, "Cache pointer over the last N positions (pointer.py --window).")
_CACHE_THETA = flags.DEFINE_float("cache_theta", None, "Pointer softmax scale (pointer.py --theta); default the preset's, else 1.0.")
_CACHE_LAMBDA = flags.DEFINE_float("cache_lambda", None, "Weight of the pointer in the mixture (pointer.py --lambdasm); "
                                   "default the preset's, else 0.1.")
_CACHE_SEARCH = flags.DEFINE_bool("cache_search", False, "Grid-search theta and lambda on the valid split, print the "
                                  "table, then use the best pair.")
_DYNAMIC = flags.DEFINE_bool("dynamic_eval", False, "Dynamic evaluation (dynamiceval.py).")
_DYNAMIC_RULE = flags.DEFINE_enum("dynamic_rule", "rms", ["rms", "sgd"], "rms: dynamiceval.py's RMS-normalised "
                                  "update with decay to the trained weights; sgd: plain SGD.")
_DYNAMIC_LR = flags.DEFINE_float("dynamic_lr", None, "Learning rate (default 5e-5 for rms, 0.1 for sgd).")
_DYNAMIC_LAMB = flags.DEFINE_float("dynamic_lamb", 0.002, "Decay rate lambda towards the trained weights (rms).")
_DYNAMIC_EPSILON = flags.DEFINE_float("dynamic_epsilon", 2e-5, "Stabiliser epsilon of the RMS rule.")
_DYNAMIC_BPTT = flags.DEFINE_integer("dynamic_bptt", 5, "Segment length (also for the training gradient statistics).")
_STATS_BATCH = flags.DEFINE_integer("dynamic_stats_batch", 100, "Batch of the gradient statistics on train.")
_STATS_SEGMENTS = flags.DEFINE_integer("dynamic_stats_segments", 0, "Use only the first N training segments for "
                                       "the statistics (dynamiceval.py --max_batches); 0: all.")


def cache_from_flags():
  from lm_jax.cache_pointer import PRESETS, CachePointer

  if _CACHE_PRESET.value is None and _CACHE_WINDOW.value is None and not _CACHE_SEARCH.value:
    if _CACHE_THETA.value is not None or _CACHE_LAMBDA.value is not None:
      raise UserError("--cache_theta/--cache_lambda need the cache on: pass --cache_window=N or --cache_preset=ptb")
    return None
  preset = PRESETS[_CACHE_PRESET.value or "ptb"]
  cache = CachePointer(window=preset.window if _CACHE_WINDOW.value is None else _CACHE_WINDOW.value,
                       theta=preset.theta if _CACHE_THETA.value is None else _CACHE_THETA.value,
                       lam=preset.lam if _CACHE_LAMBDA.value is None else _CACHE_LAMBDA.value)
  cache.validate()
  return cache


def dynamic_from_flags():
  from lm_jax.dynamic_eval import DEFAULT_LR, DynamicEval

  if not _DYNAMIC.value:
    return None
  rule = _DYNAMIC_RULE.value
  dynamic = DynamicEval(rule=rule, lr=DEFAULT_LR[rule] if _DYNAMIC_LR.value is None else _DYNAMIC_LR.value,
                        lamb=_DYNAMIC_LAMB.value, epsilon=_DYNAMIC_EPSILON.value, bptt=_DYNAMIC_BPTT.value)
  dynamic.validate()
  if _STATS_BATCH.value <= 0 or _STATS_SEGMENTS.value < 0:
    raise UserError("--dynamic_stats_batch must be > 0 and --dynamic_stats_segments >= 0; pass e.g. "
                    "--dynamic_stats_batch=100 --dynamic_stats_segments=0")
  return dynamic


def main(argv: list[str]) -> None:
  # Every flag is checked before anything is loaded.
  cache, dynamic = cache_from_flags(), dynamic_from_flags()
  methods = cache is not None or dynamic is not None
  batch_size = _BATCH_SIZE.value or (1 if methods else 10)
  if batch_size <= 0:
    raise UserError(f"--batch_size must be > 0 (got {batch_size}); pass e.g. --batch_size=10")
  from lm_jax import optim, trained
  from lm_jax.data.batching import put_on_device
  from lm_jax.evaluate import Evaluator

  run = trained.load(_WORKDIR.value)
  corpus = trained.corpus_of(run, _DATA_DIR.value, "evaluate on the data the model was trained on")
  evaluator = Evaluator(run.model, run.config.bptt)
  if not methods:
    split = put_on_device(corpus.ids[_SPLIT.value], batch_size, run.config.bptt, _SPLIT.value)
    loss = evaluator.mean_nll(run.params, split)
    print(f"| {_SPLIT.value} loss {loss:5.3f} | {_SPLIT.value} ppl {optim.perplexity(loss):8.2f} | "
          f"{split.num_tokens_scored:,} tokens scored")
    return

  max_len = max(run.config.bptt, _DYNAMIC_BPTT.value)
  splits = {name: put_on_device(corpus.ids[name], batch_size, max_len, name) for name in ("valid", "test")}
  if cache is not None:
    for name, split in splits.items():
      cache.check_split(split.rows, name)
  if _CACHE_SEARCH.value:
    cache = search_cache(evaluator, run.params, splits["valid"], cache)
  stats = None
  if dynamic is not None and dynamic.rule == "rms":
    stats = training_statistics(run, corpus, dynamic)

  rows = [("plain", {})]
  if cache is not None:
    rows.append((f"cache (window {cache.window}, theta {cache.theta:g}, lambda {cache.lam:g})", {"cache": cache}))
  if dynamic is not None:
    described = f"dynamic ({dynamic.rule}, lr {dynamic.lr:g}" + (f", lamb {dynamic.lamb:g})" if dynamic.rule == "rms" else ")")
    rows.append((described, {"dynamic": dynamic, "stats": stats}))
  if cache is not None and dynamic is not None:
    rows.append(("cache + dynamic", {"cache": cache, "dynamic": dynamic, "stats": stats}))
  print(f"batch {batch_size}; {run.model.describe()}")
  print("| method | valid ppl | test ppl | tokens/s |")
  print("|---|---:|---:|---:|")
  for name, kwargs in rows:
    results = [evaluator.evaluate(run.params, splits[s], **kwargs) for s in ("valid", "test")]
    tokens_per_second = sum(r.tokens for r in results) / sum(r.seconds for r in results)
    print(f"| {name} | {optim.perplexity(results[0].mean_nll):.2f} | {optim.perplexity(results[1].mean_nll):.2f} | "
          f"{tokens_per_second:,.0f} |", flush=True)


def search_cache(evaluator, params, valid, cache):
  """The grid of valid perplexities; returns the cache at the best pair."""
  import dataclasses

  import numpy as np

  from lm_jax.cache_pointer import SEARCH_LAMBDAS, SEARCH_THETAS

  nll_GxL = evaluator.cache_search(params, valid, cache.window, SEARCH_THETAS, SEARCH_LAMBDAS)
  print(f"cache search on valid, window {cache.window}: valid ppl by theta (rows) and lambda (columns)")
  print("| theta \\ lambda | " + " | ".join(f"{lam:g}" for lam in SEARCH_LAMBDAS) + " |")
  print("|---|" + "---:|" * len(SEARCH_LAMBDAS))
  for theta, row in zip(SEARCH_THETAS, nll_GxL):
    print(f"| {theta:g} | " + " | ".join(f"{np.exp(v):.2f}" for v in row) + " |")
  best_theta, best_lam = np.unravel_index(np.argmin(nll_GxL), nll_GxL.shape)
  best = dataclasses.replace(cache, theta=SEARCH_THETAS[best_theta], lam=SEARCH_LAMBDAS[best_lam])
  print(f"best: theta {best.theta:g}, lambda {best.lam:g}")
  return best


def training_statistics(run, corpus, dynamic):
  from lm_jax.data.batching import put_on_device
  from lm_jax.dynamic_eval import gradient_statistics

  train = put_on_device(corpus.ids["train"], _STATS_BATCH.value, dynamic.bptt, "train")
  return gradient_statistics(run.model, run.params, train, dynamic.bptt, _STATS_SEGMENTS.value or None)


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
