"""Metrics to the workdir: JSON lines (always) and TensorBoard events (when tensorboardX is installed).

What a run records in metrics.jsonl, one JSON object per line, each with `step` (train steps taken) and `time`:
- every `log_interval` windows: `train_loss` (the interval's mean of the windows' mean token NLL), `train_ppl`,
  `ms_per_batch`, `lr`, `grad_norm`;
- after each epoch: `epoch`, `valid_loss`, `valid_ppl`, `lr`, `epoch_train_loss` (the mean over all the epoch's
  windows), `epoch_train_ppl`, `epoch_seconds` and `tokens_per_second` (of its training part, the first
  window's compilation included), `num_params`;
- at the end: the best model's `valid_loss`, `valid_ppl`, `test_loss`, `test_ppl` (and the synthetic corpus's
  `valid_floor_ppl`, `test_floor_ppl`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import logging


METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _summary_writer_class() -> type:
  """tensorboardX's SummaryWriter, imported without PyTorch: its writer imports torch whenever it is installed, only
  to accept torch tensors (lm_jax writes floats), and that import is 1.8 s of every run's start (measured)."""
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # makes `import torch` fail for this import only
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


def read_records(workdir: str) -> list[dict]:
  """metrics.jsonl's records in order ([] if there is none); a line torn by a kill while it was written is left out."""
  records = []
  path = os.path.join(workdir, METRICS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          pass
  return records


class MetricsWriter:
  """Appends one JSON object per record to metrics.jsonl and mirrors scalars to TensorBoard. A run resumed
  from the checkpoint at step `resumed_at` records again what came after it: TensorBoard hides the events
  it already holds from step `resumed_at + 1` on (metrics.jsonl is trimmed by workdir.drop_metrics_after)."""

  def __init__(self, workdir: str, resumed_at: int | None = None):
    self._path = os.path.join(workdir, METRICS_FILE)
    try:
      SummaryWriter = _summary_writer_class()
      purge_step = None if resumed_at is None else resumed_at + 1
      # tensorboardX names a file by the second it opened it: two runs opened within one second (a quick
      # resume) would share the name, the second erasing the first's events. Nanoseconds keep each run its own
      # file, and the files' name order stays the runs' order, which readers apply purge_step in.
      self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR), purge_step=purge_step,
                               filename_suffix=f".{time.time_ns()}")
    except ImportError:  # Not on every image (the GPU one lacks it); JSON lines suffice.
      logging.warning("tensorboardX is not installed: writing metrics.jsonl only")
      self._tb = None

  def write(self, step: int, scalars: dict[str, float]) -> None:
    record = {"step": step, "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, float(value), step)
      # On disk now, not in up to 2 minutes: a killed run loses at most the newest record's events.
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
