"""lm_jax's side of the whole-loop benchmark (benchmarks/whole_loop.py): the trainer's own loop, lm_jax.train's
`_Loop`, over the first windows of an epoch, set up as `train_and_evaluate` sets it up.

Per window, as in every training run: the jitted, shard_mapped train step cutting its window from the
split already on the device, the tqdm bar (shown only on a terminal), the SIGTERM check, and every
`log_interval` windows the interval means read back from the device (the host sync), the log line and
the metrics record (metrics.jsonl, and TensorBoard events when tensorboardX is installed) in a
temporary workdir. Checkpoints are off (`checkpoint_every=0`), as main.py saves only at epoch ends.
"""

from __future__ import annotations

import os
import tempfile
import time

import jax
import ml_collections

from lm_jax import parallel
from lm_jax.data.sources import load_corpus
from lm_jax.metrics import METRICS_FILE
from lm_jax.train import _Loop

from benchmarks.measure import peak_rss_mib


def run(config: dict, warmup: int, windows: int) -> dict:
  """`config`: lm_jax's config as a dict. Times windows [warmup, warmup + windows) of epoch 1 by wall clock;
  the corpus load and the first `warmup` windows (compilation included) are timed apart."""
  config = ml_collections.ConfigDict(config)
  begin = time.perf_counter()
  corpus = load_corpus(config.data, training=True)
  with tempfile.TemporaryDirectory(prefix="lm_jax_whole_loop_") as workdir:
    loop = _Loop(config, workdir, corpus, parallel.data_mesh())  # places the three splits on the devices
    jax.block_until_ready([loop.train.padded_TxB, loop.valid.padded_TxB, loop.test.padded_TxB])
    load_s = time.perf_counter() - begin
    state, progress = loop.start(resuming=False)
    loop.report.open_metrics(workdir, resumed_at=None)
    try:
      with parallel.StopSignal() as stop:
        begin = time.perf_counter()
        state = jax.block_until_ready(loop.train_epoch(state, progress, stop, until_window=warmup))
        warmup_s = time.perf_counter() - begin
        records_before = _metrics_records(workdir)
        begin = time.perf_counter()
        state = jax.block_until_ready(loop.train_epoch(state, progress, stop, until_window=warmup + windows))
        timed_s = time.perf_counter() - begin
    finally:
      loop.report.close()
    log_lines = _metrics_records(workdir) - records_before
  return {"device": str(jax.devices()[0].device_kind), "load_s": load_s, "warmup_s": warmup_s, "timed_s": timed_s,
          "log_lines": log_lines, "peak_rss_mib": peak_rss_mib()}


def _metrics_records(workdir: str) -> int:
  """Log intervals written so far: one metrics.jsonl line each."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for _ in f)
