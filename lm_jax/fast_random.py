"""The train steps' random draws on threefry's original (non-partitionable) form: ~4x faster on XLA:CPU.

jax's default, jax_threefry_partitionable=True, draws the same numbers however a random array is sharded across
devices, at about 4x the CPU time per number: AWD-LSTM's masks at PTB size (11.2M draws a window, most of them
weight drop's) took 110 ms of a 2.1 s step (docs/performance.md). lm_jax's steps never draw a sharded array: each
device draws its own masks inside shard_map, and a classifier step runs on one device. So that invariance buys
nothing there. The two forms draw different numbers from the same key: a run resumed from a checkpoint written
before this choice continues with other masks than it would have drawn then.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

Step = TypeVar("Step", bound=Callable)


def traced_with_fast_random(step: Step) -> Step:
  """`step`, traced with threefry's original form (the choice is made when jax.random lowers a draw, at trace
  time, so it holds inside whatever jit or shard_map wraps the step)."""

  @functools.wraps(step)
  def traced(*args, **kwargs):
    with jax.threefry_partitionable(False):
      return step(*args, **kwargs)

  return traced
