"""One framework-neutral interface (`Workload`) and the one procedure that times it, so lm_jax and
PyTorch are measured by exactly the same code; `run` is a worker process's measurement of one shape."""

from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Callable

from benchmarks.common.timing import median_seconds, peak_rss_mib, seconds
from benchmarks.common.worker import progress
from benchmarks.step_time.shapes import Shape

# Only the framework measured is imported into its worker.
WORKLOADS = {"lm_jax": "benchmarks.step_time.jax_workload", "pytorch": "benchmarks.step_time.torch_workload"}


@dataclasses.dataclass(frozen=True)
class Workload:
  """A model of one shape in one framework. Each callable returns once its work is finished on the
  device, so wall-clock time around it is the time of the work."""

  train_step: Callable[[], None]
  evaluate: Callable[[], None]
  generate: dict[int, Callable[[], None]]       # N -> N samples of `gen_words` words at once, for each N it runs
  recurrence_forward: Callable[[], None] | None  # embedding + recurrent layers forward at the train shape; rnn only
  compilations: Callable[[], int | None]        # compiled train-step programs; None where nothing compiles
  device_peak_mib: Callable[[], float | None]   # accelerator memory; None on CPU
  device: str


def generate_key(num_samples: int, quantity: str = "words_per_s") -> str:
  """The result key of generation's `quantity` (words_per_s, compile_s) with `num_samples` samples at once."""
  return f"generate_n{num_samples}_{quantity}"


def measure(workload: Workload, shape: Shape) -> dict:
  """Steady-state medians after warm-up; compile time is the first call minus the steady state. A
  workload without a recurrence forward gives None for it."""
  first_step_s = seconds(workload.train_step)
  compilations_after_first = workload.compilations()
  for _ in range(shape.warmup - 1):
    workload.train_step()
  compilations_after_warmup = workload.compilations()
  step_s = median_seconds(workload.train_step, shape.steps)
  compilations_at_end = workload.compilations()
  first_eval_s = seconds(workload.evaluate)
  eval_s = median_seconds(workload.evaluate, shape.repeats)
  generation = {}
  for num_samples, generate in workload.generate.items():
    first_generate_s = seconds(generate)
    generate_s = median_seconds(generate, shape.repeats)
    generation[generate_key(num_samples)] = num_samples * shape.gen_words / generate_s
    generation[generate_key(num_samples, "compile_s")] = first_generate_s - generate_s
  forward_tokens_per_s = None
  if workload.recurrence_forward is not None:
    workload.recurrence_forward()  # compiles
    forward_tokens_per_s = shape.train_tokens / median_seconds(workload.recurrence_forward, shape.steps)
  return {
      "device": workload.device,
      "train_ms": 1000 * step_s,
      "train_tokens_per_s": shape.train_tokens / step_s,
      "compile_s": first_step_s - step_s,
      "compilations_after_first": compilations_after_first,
      "compilations_after_warmup": compilations_after_warmup,
      "compilations_at_end": compilations_at_end,
      "eval_tokens_per_s": shape.eval_tokens / eval_s,
      "eval_compile_s": first_eval_s - eval_s,
      **generation,
      "recurrence_forward_tokens_per_s": forward_tokens_per_s,
      "peak_rss_mib": peak_rss_mib(),
      "device_peak_mib": workload.device_peak_mib(),
  }


def run(framework: str, shape: dict, breakdown: bool = False) -> dict:
  """A worker's measurement of `shape` (as a dict) in `framework`, with lm_jax's step breakdown if asked."""
  shape = Shape(**{**shape, "gen_samples": tuple(shape["gen_samples"])})  # JSON made it a list
  result = measure(importlib.import_module(WORKLOADS[framework]).build(shape), shape)
  if breakdown:
    from benchmarks.step_time.jax_workload import step_breakdown
    result["breakdown"] = step_breakdown(shape)
  return result


def run_many(framework: str, shapes: list[dict], deadline: float | None = None) -> list[dict]:
  """`run` of each shape in turn in this one process, none started after `deadline` (a time.time()): the
  results of those measured, in order."""
  results = []
  for shape in shapes:
    if deadline is not None and time.time() > deadline:
      progress(f"  time is up: {len(shapes) - len(results)} config(s) left unmeasured")
      break
    results.append(run(framework, shape))
    progress(f"  {shape['model']} {shape['size']} V{shape['vocab']:,} {shape['dtype']}: "
             f"{results[-1]['train_ms']:.2f} ms/step")
  return results
