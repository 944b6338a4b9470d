"""Wall-clock timing and peak memory, the same for every framework and benchmark."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable


def seconds(fn: Callable[[], None]) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def median_seconds(fn: Callable[[], None], calls: int) -> float:
  return statistics.median(seconds(fn) for _ in range(calls))


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
