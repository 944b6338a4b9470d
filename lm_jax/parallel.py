"""Data parallelism over every device of every process: the 1-D 'data' mesh, the shardings the steps
use, placing host arrays on the mesh, and the multi-host plumbing (joining, barriers, SIGTERM).

The steps are per-device programs under jax.jit + jax.shard_map (jax.pmap's successor): parameters
and optimiser state are replicated; a batchified split [rows, B] and the carried state (axis 0 of every
leaf is its batch) are split along B, so each column stays on one device for a whole epoch. One device is a mesh of one.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm_jax.errors import UserError

DATA = "data"
REPLICATED = P()
COLUMNS = P(None, DATA)  # a split [rows, B]: whole columns per device
CARRY = P(DATA)          # every leaf of a carried state [B, ...], each column beside its data


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (jax.distributed.initialize); on a Cloud TPU VM every argument is found."""
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (RuntimeError, ValueError) as e:
    first_line = str(e).strip().splitlines()[0][:200]
    raise UserError(f"could not join the distributed run ({first_line}); on a Cloud TPU VM pass only --distributed, "
                    "elsewhere pass --coordinator_address=HOST:PORT, --num_processes and --process_id") from None


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices`, by default every device of every process."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA,))


def require_divisible(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.size:
    multiple = -(-batch_size // mesh.size) * mesh.size
    raise UserError(f"batch size {batch_size} does not split over {mesh.size} devices; pass "
                    f"--config.batch_size={multiple} (a multiple of {mesh.size})")


def padded_columns(columns: int, mesh: Mesh) -> int:
  """`columns` rounded up to a multiple of the device count."""
  return -(-columns // mesh.size) * mesh.size


def put(x: Any, mesh: Mesh, spec: P) -> jax.Array:
  """The global array whose value is `x` (the same on every process), laid out by `spec`; each process
  hands over only the block its own devices hold (jax.make_array_from_process_local_data)."""
  x = np.asarray(x)
  sharding = NamedSharding(mesh, spec)
  blocks = [[s.indices(n)[:2] for s, n in zip(index, x.shape)]
            for index in sharding.addressable_devices_indices_map(x.shape).values()]
  local = tuple(slice(min(b[d][0] for b in blocks), max(b[d][1] for b in blocks)) for d in range(x.ndim))
  return jax.make_array_from_process_local_data(sharding, x[local], x.shape)


def put_tree(tree: Any, mesh: Mesh, specs: Any) -> Any:
  """`tree` on `mesh`, each subtree laid out by its entry of `specs` (a prefix of `tree`)."""
  return jax.tree.map(lambda spec, subtree: jax.tree.map(lambda x: put(x, mesh, spec), subtree), specs, tree)


def shardings(mesh: Mesh, specs: Any) -> Any:
  """`specs` (a tree of PartitionSpecs) as NamedShardings on `mesh`."""
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs)


def on_mesh(tree: Any, mesh: Mesh) -> bool:
  """Whether every leaf of `tree` is an array on `mesh` (placed there, or returned by a step over it)."""
  return all(isinstance(x, jax.Array) and getattr(x.sharding, "mesh", None) == mesh for x in jax.tree.leaves(tree))


def is_main_process() -> bool:
  """Process 0 writes the logs and metrics; every process takes part in checkpoints."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process gets here (nothing to wait for with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


class StopSignal:
  """SIGTERM (a cloud VM's preemption notice) as a request to stop at a step boundary that every
  process agrees on. One process: a handler sets a flag. Several: JAX's preemption service, started by
  jax.distributed.initialize, catches SIGTERM on any host and names the same step to all of them."""

  def __enter__(self) -> StopSignal:
    self.requested, self._previous = False, None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _on_sigterm(self, signum, frame) -> None:
    self.requested = True

  def reached(self, step: int) -> bool:
    """Called after every step (the preemption service needs each one); True from the agreed step on."""
    if jax.process_count() > 1 and not self.requested:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested
