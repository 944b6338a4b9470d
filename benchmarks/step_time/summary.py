"""From the workers' results to the figures the step-time report states: per config the medians, the
lm_jax/PyTorch ratio of each round, generation against its roofline; across configs bfloat16 against
float32, and the issue's targets, each with its measured value and whether it was met."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable

from benchmarks.common.rounds import FRAMEWORKS, median_values
from benchmarks.step_time.flops import generated_word_flops, train_step_flops
from benchmarks.step_time.measure import generate_key
from benchmarks.step_time.roofline import bytes_per_word, roofline_words_per_s
from benchmarks.step_time.shapes import TRANSFORMER, Shape

# ratio name -> the throughput it compares; every ratio is lm_jax's over PyTorch's in the same round and dtype,
# so > 1 means lm_jax is faster. A ratio exists where both frameworks measured it (no recurrence forward for
# the transformer).
RATIOS = {"train": "train_tokens_per_s", "eval": "eval_tokens_per_s", "generate": generate_key(1),
          "recurrence_forward": "recurrence_forward_tokens_per_s"}
COMPILATION_COUNTS = ("compilations_after_first", "compilations_after_warmup", "compilations_at_end")

# The targets.
TRAIN_TARGETS = {"small": 1.5, "medium": 1.3}  # size -> lm_jax/PyTorch train tokens/s, every rnn cell
SIZE_NAMES = {"small": "2x200", "medium": "2x650"}
EVAL_TARGET = 2.0                 # lm_jax/PyTorch evaluation tokens/s, every config
RECURRENCE_FORWARD_TARGET = 1.0   # lm_jax/PyTorch recurrence forward tokens/s at small: no slower
BATCHED_GENERATION_TARGET = 10.0  # lm_jax's words/s at N = 32 over N = 1
ROOFLINE_GAP_LIMIT = 1.5          # roofline words/s over lm_jax's at N = 1
COMPILE_LIMIT_S = 10.0


def config_name(config: dict) -> str:
  """e.g. 'lstm small V33,278 float32', from a config or a shape as a dict."""
  return f"{config['model']} {config['size']} V{config['vocab']:,} {config['dtype']}"


def summarise(shape: Shape, runs: dict[str, list[dict]], bandwidth_gb_per_s: float) -> dict:
  """One config: its runs per framework, medians over rounds, ratios per (lm_jax, PyTorch) pair, and lm_jax's
  generation at N = 1 against the memory-bandwidth roofline and at the largest N against N = 1."""
  breakdown = runs["lm_jax"][0].pop("breakdown", None)
  flops = train_step_flops(shape)
  medians = {framework: median_values(framework_runs) for framework, framework_runs in runs.items()}
  ratios = {name: [jax_run[key] / torch_run[key] for jax_run, torch_run in zip(runs["lm_jax"], runs["pytorch"])]
            for name, key in RATIOS.items() if medians["lm_jax"].get(key) and medians["pytorch"].get(key)}
  single, batched = generate_key(1), generate_key(max(shape.gen_samples))
  batched_over_single = [run[batched] / run[single] for run in runs["lm_jax"]]
  roofline = roofline_words_per_s(shape, bandwidth_gb_per_s)
  return {
      "model": shape.model, "size": shape.size, "vocab": shape.vocab, "dtype": shape.dtype,
      "shape": dataclasses.asdict(shape), "train_step_flops": flops, "runs": runs, "median": medians,
      "ratios": ratios, "median_ratio": {name: statistics.median(values) for name, values in ratios.items()},
      "gflops_per_s": {framework: flops / (m["train_ms"] / 1000) / 1e9 for framework, m in medians.items()},
      "generation": {
          "batched_samples": max(shape.gen_samples),
          "batched_over_single": batched_over_single,
          "median_batched_over_single": statistics.median(batched_over_single),
          "bytes_per_word": bytes_per_word(shape),
          "flops_per_word": generated_word_flops(shape),
          "roofline_words_per_s": roofline,
          "roofline_over_single": roofline / medians["lm_jax"][single],
      },
      "breakdown": breakdown,
  }


def dtype_speedups(configs: list[dict]) -> list[dict]:
  """Per (model, size, vocabulary) measured in both dtypes: each framework's train ms per step in float32
  and bfloat16, and the bfloat16 speedup (float32 ms / bfloat16 ms)."""
  by_dtype = {(c["model"], c["size"], c["vocab"], c["dtype"]): c for c in configs}
  rows = []
  for c in configs:
    pair = by_dtype.get((c["model"], c["size"], c["vocab"], "bfloat16"))
    if c["dtype"] != "float32" or pair is None:
      continue
    row = {"model": c["model"], "size": c["size"], "vocab": c["vocab"]}
    for framework in FRAMEWORKS:
      f32_ms, bf16_ms = c["median"][framework]["train_ms"], pair["median"][framework]["train_ms"]
      row[framework] = {"float32_ms": f32_ms, "bfloat16_ms": bf16_ms, "bfloat16_speedup": f32_ms / bf16_ms}
    rows.append(row)
  return rows


def targets(configs: list[dict]) -> list[dict]:
  """The issue's targets, each with what was measured and whether it was met (None: nothing measured)."""
  cells = [c for c in configs if c["model"] != TRANSFORMER]
  small_cells = [c for c in cells if c["size"] == "small" and "recurrence_forward" in c["median_ratio"]]
  ratio = lambda name: lambda c: c["median_ratio"][name]
  generation = lambda name: lambda c: c["generation"][name]
  return [
      *(_target(f"train tokens/s >= {threshold}x PyTorch, every cell at {SIZE_NAMES[size]}, each vocabulary and "
                "dtype", [c for c in cells if c["size"] == size], ratio("train"), at_least=threshold)
        for size, threshold in TRAIN_TARGETS.items()),
      _target(f"evaluation tokens/s >= {EVAL_TARGET}x PyTorch, every config", configs, ratio("eval"),
              at_least=EVAL_TARGET),
      _target("recurrence forward at 2x200 no slower than torch.nn.LSTM/GRU/RNN (lm_jax/PyTorch tokens/s >= "
              f"{RECURRENCE_FORWARD_TARGET})", small_cells, ratio("recurrence_forward"),
              at_least=RECURRENCE_FORWARD_TARGET),
      _target(f"generation words/s at N = 32 >= {BATCHED_GENERATION_TARGET}x N = 1 (lm_jax)", configs,
              generation("median_batched_over_single"), at_least=BATCHED_GENERATION_TARGET),
      _target(f"generation at N = 1 within {ROOFLINE_GAP_LIMIT}x of the memory-bandwidth roofline (roofline / "
              "lm_jax words/s)", configs, generation("roofline_over_single"), at_most=ROOFLINE_GAP_LIMIT),
      _target(f"train-step compile time <= {COMPILE_LIMIT_S:g} s per config (worst round)", configs,
              lambda c: max(run["compile_s"] for run in c["runs"]["lm_jax"]), at_most=COMPILE_LIMIT_S, unit=" s"),
      _no_recompilation(configs),
      _peak_memory(configs),
  ]


def _target(name: str, chosen: list[dict], value: Callable[[dict], float], *, at_least: float = -math.inf,
            at_most: float = math.inf, unit: str = "x") -> dict:
  values = [(config_name(c), value(c)) for c in chosen]
  return {"target": name, "measured": ", ".join(f"{config} {v:.2f}{unit}" for config, v in values),
          "met": all(at_least <= v <= at_most for _, v in values) if values else None}


def _no_recompilation(configs: list[dict]) -> dict:
  runs = [run for c in configs for run in c["runs"]["lm_jax"]]
  return {"target": "no recompilation after the first step (compiled programs after first step / warm-up / end)",
          "measured": ", ".join(f"{config_name(c)} {' '.join(map(compilations, c['runs']['lm_jax']))}" for c in configs),
          "met": all(len({run[count] for count in COMPILATION_COUNTS}) == 1 for run in runs) if runs else None}


def _peak_memory(configs: list[dict]) -> dict:
  """Stated, with no limit: the largest peak resident memory of each framework (and the accelerator's)."""
  parts = []
  for framework, label in FRAMEWORKS.items():
    for key, what in (("peak_rss_mib", "RSS"), ("device_peak_mib", "device")):
      measured = [(c["median"][framework][key], config_name(c)) for c in configs if c["median"][framework].get(key)]
      if measured:
        mib, config = max(measured)
        parts.append(f"{label} {what} {mib:,.0f} MiB ({config})")
  return {"target": "peak memory stated (largest over configs)", "measured": ", ".join(parts),
          "met": bool(parts) if configs else None}


def compilations(run: dict) -> str:
  return "/".join(str(run[count]) for count in COMPILATION_COUNTS)
