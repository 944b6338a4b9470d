"""Metrics to the workdir: JSON lines (always) and TensorBoard events (when tensorboardX is installed)."""

from __future__ import annotations

import json
import os
import time

from absl import logging


METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
  """Appends one JSON object per record to metrics.jsonl and mirrors scalars to TensorBoard. A run resumed
  from the checkpoint at step `resumed_at` records again what came after it: TensorBoard hides the events
  it already holds from step `resumed_at + 1` on (metrics.jsonl is trimmed by workdir.drop_metrics_after)."""

  def __init__(self, workdir: str, resumed_at: int | None = None):
    self._path = os.path.join(workdir, METRICS_FILE)
    try:
      from tensorboardX import SummaryWriter
      purge_step = None if resumed_at is None else resumed_at + 1
      self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR), purge_step=purge_step)
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
