"""Rounds of alternating worker processes, lm_jax then PyTorch: the frameworks in the order they run, and the
medians of each framework's results over rounds."""

from __future__ import annotations

import statistics

FRAMEWORKS = {"lm_jax": "lm_jax", "pytorch": "PyTorch"}  # key -> label; workers run in this order


def median_values(runs: list[dict]) -> dict[str, float]:
  """Per numeric result, its median over the runs."""
  numeric = [key for key, value in runs[0].items() if isinstance(value, (int, float))]
  return {key: statistics.median(run[key] for run in runs) for key in numeric}
