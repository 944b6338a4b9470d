"""The step-time suite's schedule: the machine worker, the configs (model x size x vocabulary x dtype), each
measured in alternating lm_jax and PyTorch worker processes, and the results the report is written from. The
command (`__main__.py`) runs a fresh pair of processes per config and round; `measure_together`, for a GPU
lent for minutes, one process per framework for a group of configs."""

from __future__ import annotations

import dataclasses
import datetime
import itertools

from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.common.worker import call_worker, progress
from benchmarks.step_time import summary
from benchmarks.step_time.flops import FORMULA
from benchmarks.step_time.measure import generate_key
from benchmarks.step_time.shapes import TRANSFORMER, Shape, make_shape

MEASURE = "benchmarks.step_time.measure:run"
MEASURE_MANY = "benchmarks.step_time.measure:run_many"


def describe_machine(quick: bool) -> dict:
  progress("machine: devices, matmul ceilings, memory bandwidth")
  return call_worker("benchmarks.common.machine:describe",
                     {"matmul_n": 256 if quick else 2048, "bandwidth_mib": 16 if quick else 512})


def shapes(models: list[str], sizes: list[str], vocabs: list[int], dtypes: list[str], lr: float, clip: float,
           steps: int | None) -> list[Shape]:
  """Every config, size-major; a model's dtypes side by side, so each bfloat16/float32 comparison also comes
  from neighbouring processes."""
  return [make_shape(model, size, vocab, dtype, lr, clip, steps)
          for size, vocab, model, dtype in itertools.product(sizes, vocabs, models, dtypes)]


def _progress_line(run: dict, shape: Shape) -> None:
  words = ", ".join(f"N={n} {run[generate_key(n)]:,.0f}" for n in shape.gen_samples if generate_key(n) in run)
  progress(f"  {run['train_ms']:.2f} ms/step, {run['eval_tokens_per_s']:,.0f} eval tokens/s, words/s {words}")


def measure_config(shape: Shape, rounds: int, bandwidth_gb_per_s: float) -> dict:
  runs = {framework: [] for framework in FRAMEWORKS}
  for round_index in range(rounds):
    for framework, label in FRAMEWORKS.items():
      progress(f"{summary.config_name(dataclasses.asdict(shape))}, round {round_index + 1}/{rounds}: {label}")
      # The step breakdown (lm_jax/profile.py: rnn models) needs lm_jax alone; one round of it is enough. Its
      # parts are timed in float32.
      breakdown = framework == "lm_jax" and round_index == 0 and shape.dtype == "float32" and shape.model != TRANSFORMER
      run = call_worker(MEASURE, {"framework": framework, "shape": dataclasses.asdict(shape), "breakdown": breakdown},
                        framework)
      _progress_line(run, shape)
      runs[framework].append(run)
  return summary.summarise(shape, runs, bandwidth_gb_per_s)


def measure_together(group: list[Shape], bandwidth_gb_per_s: float, deadline: float | None) -> list[dict]:
  """One round of `group` in one lm_jax process, which measures the configs in turn and starts none after
  `deadline` (a time.time()), then one PyTorch process over the configs lm_jax measured. No step breakdown."""
  runs = {}
  for framework, label in FRAMEWORKS.items():
    measured = group[:len(runs["lm_jax"])] if runs else group
    if not measured:
      return []
    progress(f"{len(measured)} config(s) from {summary.config_name(dataclasses.asdict(group[0]))} in one process: "
             f"{label}")
    runs[framework] = call_worker(MEASURE_MANY, {"framework": framework, "deadline": deadline,
                                                 "shapes": [dataclasses.asdict(shape) for shape in measured]},
                                  framework)
  return [summary.summarise(shape, {framework: [runs[framework][k]] for framework in FRAMEWORKS}, bandwidth_gb_per_s)
          for k, shape in enumerate(group[:len(runs["lm_jax"])])]


def results(machine: dict, configs: list[dict], rounds: int, quick: bool, dtypes_reason: str) -> dict:
  """What the report and its JSON hold."""
  return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "quick": quick, "rounds": rounds, "machine": machine, "dtypes_reason": dtypes_reason,
          "flops_formula": FORMULA, "configs": configs, "dtype_speedups": summary.dtype_speedups(configs),
          "targets": summary.targets(configs)}
