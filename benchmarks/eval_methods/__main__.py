"""Evaluation-time methods on a trained model: plain vs cache pointer vs dynamic evaluation vs both, on
valid and test at batch 1 (the references'), perplexity and tokens/s; and the speed of the cache against
awd-lstm-lm pointer.py's per-token PyTorch loop (torch_reference/cache_pointer.py) on the same machine.

  python -m benchmarks.eval_methods --workdir=runs/ptb_small --cache_preset=ptb

Writes benchmarks/results/eval-methods-<machine>.md and .json. The PyTorch loop is timed over
--torch_tokens positions past the window (its steady state: every later position pays the pointer), after
running through the first window uncounted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from benchmarks.common import machine

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a trained model (lm-jax-train or lm-jax-import).")
_CACHE_PRESET = flags.DEFINE_enum("cache_preset", "ptb", ["ptb", "wt2"], "Cache values (awd-lstm-lm README).")
_METHODS = flags.DEFINE_list("methods", "plain,cache,dynamic,both", "Rows of the table.")
_TORCH_TOKENS = flags.DEFINE_integer("torch_tokens", 1000, "Positions past the window the PyTorch loop is timed on.")
_STATS_SEGMENTS = flags.DEFINE_integer("stats_segments", 0, "Training segments for the gradient statistics (0: all).")
_OUT = flags.DEFINE_string("out", "benchmarks/results", "Where the report goes.")


def torch_pointer_speed(run, test_ids: np.ndarray, cache, evaluator) -> dict:
  """Steady-state tokens/s of the reference loop, and its agreement with lm_jax on the same positions."""
  import torch

  from lm_jax import convert
  from lm_jax.data.batching import put_on_device
  from torch_reference.cache_pointer import pointer_token_nll
  from torch_reference.word_language_model import TorchRNNModel

  torch.set_num_threads(1)
  m = run.model
  reference = TorchRNNModel(m.cell, m.vocab_size, m.emsize, m.nhid, m.nlayers, tied=m.tied)
  reference.load_state_dict(convert.to_torch(convert.export_state_dict(m, run.params)))
  data = torch.from_numpy(test_ids.astype(np.int64)).view(-1, 1)
  warm = cache.window + 1
  begin = time.perf_counter()
  pointer_token_nll(reference, data, 5000, cache.window, cache.theta, cache.lam, max_tokens=warm)
  t_warm = time.perf_counter() - begin
  begin = time.perf_counter()
  nlls = pointer_token_nll(reference, data, 5000, cache.window, cache.theta, cache.lam,
                           max_tokens=warm + _TORCH_TOKENS.value)
  seconds = time.perf_counter() - begin - t_warm
  ours = evaluator.token_nll(run.params, put_on_device(test_ids, 1, run.config.bptt), cache=cache)[:len(nlls), 0]
  return {"tokens": _TORCH_TOKENS.value, "seconds": seconds, "tokens_per_second": _TORCH_TOKENS.value / seconds,
          "max_abs_nll_difference": float(np.max(np.abs(ours - np.asarray(nlls)))), "bptt": 5000, "threads": 1}


def main(argv: list[str]) -> None:
  del argv
  from lm_jax import optim, trained
  from lm_jax.cache_pointer import PRESETS
  from lm_jax.data.batching import put_on_device
  from lm_jax.data.sources import load_corpus
  from lm_jax.dynamic_eval import DynamicEval, gradient_statistics
  from lm_jax.evaluate import Evaluator

  run = trained.load(_WORKDIR.value)
  corpus = load_corpus(run.config.data)
  cache, dynamic = PRESETS[_CACHE_PRESET.value], DynamicEval()
  evaluator = Evaluator(run.model, run.config.bptt)
  splits = {name: put_on_device(corpus.ids[name], 1, max(run.config.bptt, dynamic.bptt), name) for name in ("valid", "test")}
  stats, stats_seconds = None, 0.0
  if {"dynamic", "both"} & set(_METHODS.value):
    begin = time.perf_counter()
    train = put_on_device(corpus.ids["train"], 100, dynamic.bptt, "train")
    stats = gradient_statistics(run.model, run.params, train, dynamic.bptt, _STATS_SEGMENTS.value or None)
    stats_seconds = time.perf_counter() - begin
  kwargs = {"plain": {}, "cache": {"cache": cache}, "dynamic": {"dynamic": dynamic, "stats": stats},
            "both": {"cache": cache, "dynamic": dynamic, "stats": stats}}
  rows = []
  for method in _METHODS.value:
    results = {s: evaluator.evaluate(run.params, split, **kwargs[method]) for s, split in splits.items()}
    rows.append({"method": method, **{f"{s}_ppl": optim.perplexity(r.mean_nll) for s, r in results.items()},
                 **{f"{s}_tokens_per_second": r.tokens_per_second for s, r in results.items()}})
    print(rows[-1], flush=True)
  torch_speed = torch_pointer_speed(run, corpus.ids["test"], cache, evaluator)
  cache_row = next((r for r in rows if r["method"] == "cache"), None)
  results = {"machine": {"name": machine.device_name(), "cpu": machine.cpu_model(), "versions": machine.versions()},
             "workdir": _WORKDIR.value, "model": run.model.describe(), "batch": 1, "bptt": run.config.bptt,
             "cache": vars(cache), "dynamic": vars(dynamic), "stats_seconds": stats_seconds, "rows": rows,
             "torch_pointer_loop": torch_speed,
             "cache_speedup": cache_row and cache_row["test_tokens_per_second"] / torch_speed["tokens_per_second"]}
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"eval-methods-{machine.device_name()}"
  stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
  stem.with_suffix(".md").write_text(markdown(results))
  print(markdown(results))


def markdown(r: dict) -> str:
  lines = [f"# Evaluation-time methods: {r['model']}, batch {r['batch']}", "",
           f"Machine: {r['machine']['name']} ({r['machine']['cpu']}); workdir {r['workdir']}.",
           f"Cache: window {r['cache']['window']}, theta {r['cache']['theta']}, lambda {r['cache']['lam']}. "
           f"Dynamic: {r['dynamic']['rule']}, lr {r['dynamic']['lr']}, lamb {r['dynamic']['lamb']}, epsilon "
           f"{r['dynamic']['epsilon']}, bptt {r['dynamic']['bptt']}; training statistics {r['stats_seconds']:.0f} s.", "",
           "| method | valid ppl | test ppl | tokens/s (valid) | tokens/s (test) |", "|---|---:|---:|---:|---:|"]
  for row in r["rows"]:
    lines.append(f"| {row['method']} | {row['valid_ppl']:.2f} | {row['test_ppl']:.2f} | "
                 f"{row['valid_tokens_per_second']:,.0f} | {row['test_tokens_per_second']:,.0f} |")
  t = r["torch_pointer_loop"]
  lines += ["", f"PyTorch pointer.py loop (batch 1, bptt {t['bptt']}, {t['threads']} thread), {t['tokens']} positions "
            f"past the window: {t['tokens_per_second']:,.0f} tokens/s; its token NLL differs from lm_jax's by at most "
            f"{t['max_abs_nll_difference']:.1e}."]
  if r["cache_speedup"]:
    lines.append(f"lm_jax cache on test: {r['cache_speedup']:.1f}x the loop's tokens/s.")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
