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
from lm_jax.metrics import read_records

from benchmarks.classification.report import fold_summary
from benchmarks.common.timing import peak_rss_mib


def final_record(workdir: str) -> dict:
  """The run's last record holding its test scores (what `finish` wrote)."""
  return [record for record in read_records(workdir) if "test_accuracy" in record][-1]


def training_seconds(workdir: str) -> float:
  """The run's epochs' training time (each epoch's training part, its compilation included; not the dev scoring
  or the checkpoints), as its epoch records hold it: the same whether or not the run was resumed."""
  return sum(record["epoch_seconds"] for record in read_records(workdir) if "epoch_seconds" in record)


def run(config: dict, workdir: str | None = None) -> dict:
  """`config`: a classification config as a dict (config.to_dict()); `workdir`: where the run is kept, or None for
  a temporary one."""
  config = config_lib.from_saved(config)
  resumed = workdir is not None and os.path.isdir(workdir) and bool(os.listdir(workdir))
  with contextlib.ExitStack() as stack:
    if workdir is None:
      workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="lm_jax_classify_bench_"))
    stack.enter_context(contextlib.redirect_stdout(sys.stderr))
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train_and_evaluate(config, workdir, resume=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run_dirs = [workdir]
    if "folds" in summary:  # cross-validated: a run per fold
      run_dirs = [os.path.join(workdir, f"fold-{f + 1}") for f in range(summary["folds"])]
    records = [final_record(d) for d in run_dirs]
    train_s = sum(training_seconds(d) for d in run_dirs)
  return {**fold_summary(records), "train_s": train_s, "wall_s": wall, "cpu_s": cpu, "resumed": resumed,
          "epochs": config.epochs, "peak_rss_mib": peak_rss_mib()}
