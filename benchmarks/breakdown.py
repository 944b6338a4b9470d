"""The lm_jax step breakdown of the benchmark report: lm_jax.profile's parts (the mechanism behind
lm-jax-profile) for the benchmark's model at a `Shape`."""

from __future__ import annotations

from lm_jax import steps
from lm_jax.profile import DERIVATION, profile_step

from benchmarks import jax_workload
from benchmarks.shapes import Shape

__all__ = ["DERIVATION", "step_breakdown"]


def step_breakdown(shape: Shape) -> dict:
  """The profile's JSON: step_ms, parts_ms (summing to step_ms with 'rest'), percent, per_time_step_ms."""
  s = jax_workload.setup(shape)
  train_step = steps.make_train_step(s.model, s.optimizer, shape.bptt)
  return profile_step(s.model, s.optimizer, s.state, train_step, s.train, shape.bptt, shape.steps).to_json()
