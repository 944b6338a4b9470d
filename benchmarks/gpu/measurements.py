"""What the GPU check measures, each in worker processes one at a time: the cuDNN LSTM backend against the scan
(cudnn_check.py), the AWD-LSTM config against PyTorch (awd.py), and the step-time suite's configs in groups, as
far as the deadline allows. A dry run: on a CPU, the cut sizes (the step-time suite's quick ones)."""

from __future__ import annotations

import time

from lm_jax.config import reference_config
from lm_jax.models.cells import CELLS

from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.common.worker import call_worker, progress
from benchmarks.gpu import awd
from benchmarks.step_time import suite, summary
from benchmarks.step_time.shapes import DTYPES, PTB_VOCAB, QUICK_VOCAB, TRANSFORMER, VOCABS

MODELS = [*CELLS, TRANSFORMER]
SIZES = ["small", "medium"]
TIMED_STEPS = 10           # per step-time config and framework (the suite's default is 20)
GROUP_MIN_S = 30           # no size and vocabulary's group is started with less time left
RESERVE_S = 15             # kept for writing the report
PYTORCH_S_PER_CONFIG = 4   # what PyTorch's process needs per config after lm_jax's (an estimate)


def cudnn_rows(dry_run: bool) -> list[dict]:
  progress("cuDNN LSTM backend against the scan")
  return call_worker("benchmarks.gpu.cudnn_check:run", {"sizes": ["quick"] if dry_run else SIZES,
                                                         "vocab": QUICK_VOCAB if dry_run else PTB_VOCAB,
                                                         "timed_steps": 3 if dry_run else 20, "dry_run": dry_run},
                     "lm_jax")


def awd_runs(dry_run: bool) -> dict:
  config, vocab = awd.config(dry_run), QUICK_VOCAB if dry_run else awd.VOCAB
  runs = {}
  for framework, label in FRAMEWORKS.items():
    progress(f"AWD-LSTM config: {label}")
    runs[framework] = call_worker(f"benchmarks.gpu.awd:run_{framework}", {
        "config": config, "vocab": vocab, "steps": 3 if dry_run else TIMED_STEPS, "warmup": 2}, framework)
  return {"config": config, "vocab": vocab, "runs": runs}


def step_time_configs(machine: dict, sizes: list[str], deadline: float,
                      dry_run: bool) -> tuple[list[dict], list[str]]:
  """The step-time configs measured, in groups of a size and vocabulary, and the names of those left out."""
  reference = reference_config().optim  # clip 0.25, SGD lr 20 for both frameworks, as step_time's
  # A CPU's PyTorch runs a bfloat16 LSTM only with native bfloat16 (oneDNN's); a GPU has it.
  dtypes = list(DTYPES) if machine["bfloat16_support"] else ["float32"]
  measured, left_out = [], []
  groups = [(size, vocab) for size in (["quick"] if dry_run else sizes)
            for vocab in ([QUICK_VOCAB] if dry_run else VOCABS)]
  for size, vocab in groups:
    group = suite.shapes(["lstm"] if dry_run else MODELS, [size], [vocab], dtypes, reference.lr, reference.clip,
                         None if dry_run else TIMED_STEPS)
    if deadline - time.time() < GROUP_MIN_S:
      left_out += [summary.config_name(vars(shape)) for shape in group]
      continue
    done = suite.measure_together(group, machine["bandwidth_gb_per_s"],
                                  deadline - RESERVE_S - PYTORCH_S_PER_CONFIG * len(group))
    measured += done
    left_out += [summary.config_name(vars(shape)) for shape in group[len(done):]]
  return measured, left_out
