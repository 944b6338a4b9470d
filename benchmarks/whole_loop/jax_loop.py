"""lm_jax's side of the whole-loop benchmark: the trainer's own loop through its public functions, over the
first windows of epoch 1, set up as a training run sets it up.

  training = lm_run.setup_run(config, workdir)      # corpus on the devices, model, optimiser, step, evaluator
  state, progress = lm_run.start(training, False)   # the fresh state from the seed
  state, progress = train.train_windows(training, state, progress, windows, stop, epoch_length=...)

`train_windows` runs the given windows of the current epoch in order, as every training run does: the jitted,
shard_mapped train step cutting its window from the split already on the device, the SIGTERM check, and every
`log_interval` windows the interval means read back from the device (the host sync) and the log line, which
this module counts as it passes through, and its metrics record. The workdir is a temporary one; nothing is
checkpointed.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from typing import TextIO

import jax
import ml_collections

from lm_jax import lm_run, parallel, train

from benchmarks.common.timing import peak_rss_mib

LOG_LINE = re.compile(r"^\| epoch +\d+ \|.* batches \|", re.MULTILINE)  # the reference's (main.py's) line


def run(config: dict, warmup: int, windows: int) -> dict:
  """`config`: lm_jax's config as a dict. Times windows [warmup, warmup + windows) of epoch 1 by wall clock;
  the corpus load and the first `warmup` windows (compilation included) are timed apart. The timed tokens are
  those windows' valid steps x batch (variable BPTT: their drawn lengths, not the static length they run at)."""
  config = ml_collections.ConfigDict(config)
  with tempfile.TemporaryDirectory(prefix="lm_jax_whole_loop_") as workdir:
    begin = time.perf_counter()
    training = lm_run.setup_run(config, workdir)  # reads, tokenises, batchifies the three splits onto the devices
    load_s = time.perf_counter() - begin
    state, progress = lm_run.start(training, resuming=False)
    training.report.open_metrics(workdir, resumed_at=None)  # as a run: each log line writes a metrics record
    epoch = lm_run.epoch_windows(training, 1)
    # As in a training run: the windows are those of an epoch of len(epoch), logged at its log_interval.
    train_windows = lambda state, progress, windows: jax.block_until_ready(
        train.train_windows(training, state, progress, windows, stop, epoch_length=len(epoch)))
    with parallel.StopSignal() as stop:
      begin = time.perf_counter()
      state, progress = train_windows(state, progress, epoch[:warmup])
      warmup_s = time.perf_counter() - begin
      compile_s, compiled_ahead = compile_ahead(training, state, epoch[:warmup], epoch[warmup:warmup + windows])
      programs = training.train_step.compiled._cache_size
      with LogLines() as log_lines:
        before, begin = programs(), time.perf_counter()
        train_windows(state, progress, epoch[warmup:warmup + windows])
        timed_s, compiled_while_timed = time.perf_counter() - begin, programs() - before
    training.report.close()
  timed_steps = sum(int(window.length) for window in epoch[warmup:warmup + windows])
  return {"device": str(jax.devices()[0].device_kind), "load_s": load_s, "warmup_s": warmup_s, "timed_s": timed_s,
          "compile_ahead_s": compile_s, "programs_compiled_ahead": compiled_ahead,
          "programs_compiled_while_timed": compiled_while_timed,
          "log_lines": log_lines.count, "timed_tokens": timed_steps * config.batch_size, "peak_rss_mib": peak_rss_mib()}


def compile_ahead(training: lm_run.Run, state, warmup: list, timed: list) -> tuple[float, int]:
  """Compiles the step's programs that the timed windows need and the warm-up did not (variable BPTT runs each
  window at its length rounded up to a bucket), by one step on a copy of the state per such length, so that the
  timed windows measure training, as in every epoch after the first; (seconds, programs)."""
  begin, steps_for = time.perf_counter(), training.train_step.steps_for
  compiled = {steps_for(w.length) for w in warmup}
  needed = {steps_for(w.length): w for w in timed if steps_for(w.length) not in compiled}
  for window in needed.values():
    jax.block_until_ready(training.train_step(jax.tree.map(lambda x: x.copy(), state), window,
                                              training.train.padded_TxB))
  return time.perf_counter() - begin, len(needed)


class LogLines:
  """Counts the log lines written to stdout or stderr while active, passing everything on."""

  def __init__(self):
    self.count = 0

  def __enter__(self) -> LogLines:
    self._streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (_Counting(stream, self) for stream in self._streams)
    return self

  def __exit__(self, *exc_info) -> None:
    sys.stdout, sys.stderr = self._streams


class _Counting:
  def __init__(self, stream: TextIO, lines: LogLines):
    self._stream, self._lines = stream, lines

  def write(self, text: str) -> int:
    self._lines.count += len(LOG_LINE.findall(text))
    return self._stream.write(text)

  def __getattr__(self, name: str):  # flush, isatty, fileno, ...: the stream's own
    return getattr(self._stream, name)
