"""lm_jax's side of the accuracy table, in a worker process: `train_and_evaluate` on a (dataset, model) config,
as `lm-jax-classify` runs it, in a temporary workdir; the test accuracy and macro-F1 of each run (the corpus's
test split, or each cross-validation fold) read back from its metrics.jsonl, the wall and CPU time of the whole
run, and the peak memory. The run's log lines go to stderr (the worker's stdout carries its result)."""

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


def run(config: dict) -> dict:
  """`config`: a classification config as a dict (config.to_dict())."""
  config = config_lib.from_saved(config)
  with tempfile.TemporaryDirectory(prefix="lm_jax_classify_bench_") as workdir, contextlib.redirect_stdout(sys.stderr):
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train_and_evaluate(config, workdir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run_dirs = [workdir]
    if "folds" in summary:  # cross-validated: a run per fold
      run_dirs = [os.path.join(workdir, f"fold-{f + 1}") for f in range(summary["folds"])]
    records = [final_record(d) for d in run_dirs]
  return {**fold_summary(records), "train_s": wall, "cpu_s": cpu, "epochs": config.epochs,
          "peak_rss_mib": peak_rss_mib()}
