"""lm_jax's side of the accuracy table, in a worker process: `train_and_evaluate` on a (dataset, model) config, as
`lm-jax-classify --resume` runs it, in a temporary workdir or a kept one (an interrupted run continues there; a
finished one is only scored again). Each run's test accuracy and macro-F1 (the corpus's test split, or each
cross-validation fold) and its epochs' training time are read back from its metrics.jsonl; also this worker's wall
and CPU time and its peak memory. The run's log lines go to stderr (the worker's stdout carries its result)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

from lm_jax.classify import config as config_lib
from lm_jax.classify.train import train_and_evaluate
from lm_jax.errors import Preempted
from lm_jax.metrics import read_records
from lm_jax.runner import RESUME_HINT

from benchmarks.classification.report import fold_summary
from benchmarks.common.timing import peak_rss_mib


def final_record(workdir: str) -> dict:
  """The run's last record holding its test scores (what `finish` wrote)."""
  return [record for record in read_records(workdir) if "test_accuracy" in record][-1]


def training_seconds(workdir: str) -> float:
  """The run's epochs' training time (each epoch's training part, its compilation included; not the dev scoring
  or the checkpoints), as its epoch records hold it: the same whether or not the run was resumed."""
  return sum(record["epoch_seconds"] for record in read_records(workdir) if "epoch_seconds" in record)


def seed_workdir(workdir: str, seed_index: int) -> str:
  """Where the run of the `seed_index`-th seed is kept: the first in `workdir` itself, the others beside it."""
  return workdir if seed_index == 0 else f"{workdir}-seed{seed_index}"


def run(config: dict, workdir: str | None = None, seeds: int = 1) -> dict:
  """`config`: a classification config as a dict (config.to_dict()); `workdir`: where the run is kept, or None for
  a temporary one; `seeds`: runs with config.seed, config.seed + 1, ..., their scores pooled (mean and standard
  deviation over every run, and every fold of each)."""
  config = config_lib.from_saved(config)
  run_dirs, resumed = [], False
  with contextlib.ExitStack() as stack:
    stack.enter_context(contextlib.redirect_stdout(sys.stderr))
    wall, cpu = time.perf_counter(), time.process_time()
    for seed_index in range(seeds):
      seeded = config_lib.from_saved({**config.to_dict(), "seed": config.seed + seed_index})
      if workdir is None:
        seed_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="lm_jax_classify_bench_"))
      else:
        seed_dir = seed_workdir(workdir, seed_index)
        resumed |= os.path.isdir(seed_dir) and bool(os.listdir(seed_dir))
      try:
        summary = train_and_evaluate(seeded, seed_dir, resume=True)
      except Preempted as stopped:  # checkpointed: the same benchmark command continues it (no --resume here)
        raise Preempted(f"{str(stopped).removesuffix(RESUME_HINT)}; the same benchmark command continues it" if workdir
                        else "stopped by SIGTERM; the run was in a temporary folder, now removed: pass "
                             "--runs_dir=DIR to keep runs that the same command continues") from None
      # Cross-validated: a run per fold.
      run_dirs += ([os.path.join(seed_dir, f"fold-{f + 1}") for f in range(summary["folds"])] if "folds" in summary
                   else [seed_dir])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    records = [final_record(d) for d in run_dirs]
    train_s = sum(training_seconds(d) for d in run_dirs)
  return {**fold_summary(records), "train_s": train_s, "wall_s": wall, "cpu_s": cpu, "resumed": resumed,
          "epochs": config.epochs, "seeds": seeds, "peak_rss_mib": peak_rss_mib()}
