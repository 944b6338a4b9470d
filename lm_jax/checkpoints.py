"""Checkpoints in the workdir with orbax: `latest` (to resume) and `best` (best validation loss).

Orbax writes each checkpoint into a temporary directory and renames it once complete, and the
manager removes an old step only after the new one is committed, so a crash mid-write leaves the
previous checkpoint intact. Each checkpoint carries its metadata (vocabulary, config, epoch, lr,
losses) as JSON beside the arrays, so it is self-contained, and a CRC-32 of every array's bytes, which
restore checks. A checkpoint damaged later (a truncated, lost or altered file) fails to restore or to
match its checksums: for `latest` the one before it is used instead, with a warning; for `best`
(what evaluate, generate and export read) it is a UserError naming it, never a silently different
model. Checkpoints written before the checksums restore unverified, with a warning. With several
processes every one of them calls save and restore; orbax has each write its own shards.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from lm_jax.errors import UserError

BEST = "best"
LATEST = "latest"
KEEP = {BEST: 1, LATEST: 2}
CHECKSUMS = "_array_checksums"  # reserved metadata key: {array's path in the state: CRC-32 of its bytes}


class DamagedCheckpoint(Exception):
  """A checkpoint's arrays do not match the checksums written with them."""


def checkpoint_dir(workdir: str, kind: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints", kind)


def _manager(workdir: str, kind: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=KEEP[kind], create=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir, kind), options=options)


def save(workdir: str, kind: str, step: int, state: Any, meta: dict) -> None:
  """Writes and commits `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`."""
  with _manager(workdir, kind) as manager:
    if step in manager.all_steps():  # written before a crash and replayed since, or damaged: replace it
      manager.delete(step)
    meta = {**meta, CHECKSUMS: checksums(state)}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()


def latest_step(workdir: str, kind: str) -> int | None:
  if not os.path.isdir(checkpoint_dir(workdir, kind)):
    return None
  with _manager(workdir, kind) as manager:
    return manager.latest_step()


def restore_meta(workdir: str, kind: str) -> dict:
  """The metadata of the newest readable checkpoint of `kind` (vocabulary, config, ...)."""
  meta = _restore_newest(workdir, kind, meta=ocp.args.JsonRestore()).meta
  meta.pop(CHECKSUMS, None)
  return meta


def restore(workdir: str, kind: str, like_state: Any) -> tuple[Any, dict]:
  """The newest readable checkpoint of `kind`: the entries of its state that `like_state` names, shaped and
  laid out on the devices like them, and its metadata. A shape mismatch is a UserError."""
  abstract = jax.tree.map(_abstract, like_state)
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
  restored = _restore_newest(workdir, kind, meta=ocp.args.JsonRestore(),
                             state=ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True))
  restored.meta.pop(CHECKSUMS, None)
  return restored.state, restored.meta


def checksums(state: Any) -> dict[str, str]:
  """CRC-32 (hex) of each array's bytes, by its path in `state` (e.g. "['params']['embedding']")."""
  return {jax.tree_util.keystr(path): f"{zlib.crc32(_host_bytes(x)):08x}"
          for path, x in jax.tree_util.tree_flatten_with_path(state)[0]}


def _host_bytes(x: Any) -> memoryview:
  """The array's bytes in C order. An array sharded over processes (the carry in a multi-host run) is
  gathered first; save and restore run on every process, so each takes part in the gather."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = multihost_utils.process_allgather(x, tiled=True)
  return memoryview(np.ascontiguousarray(x)).cast("B")


def _verify(restored: Any, directory: str, step: int) -> None:
  """Raises DamagedCheckpoint unless every restored array has the checksum saved with it."""
  expected = restored.meta.get(CHECKSUMS)
  if expected is None:
    logging.log_first_n(logging.WARNING, "the checkpoint in %s (step %d) predates array checksums; restoring it "
                        "unverified", 1, directory, step)
    return
  actual = checksums(restored.state)
  damaged = [path for path, crc in actual.items() if path in expected and expected[path] != crc]
  if damaged:
    raise DamagedCheckpoint(f"{', '.join(damaged[:3])} differ from the checksums saved with them")


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _restore_newest(workdir: str, kind: str, **items: ocp.args.CheckpointArgs) -> Any:
  """Restores `items` from the newest step that can be read, warning about any newer one that cannot."""
  if latest_step(workdir, kind) is None:
    raise UserError(f"no {kind} checkpoint in {checkpoint_dir(workdir, kind)}; train a model there "
                    "first with lm-jax-train --workdir")
  directory, failures = checkpoint_dir(workdir, kind), []
  with _manager(workdir, kind) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        if "state" in items:
          _verify(restored, directory, step)
      except Exception as e:  # tensorstore, JSON, file and checksum errors alike: this step cannot be used
        if _is_shape_mismatch(e):  # the model does not fit the checkpoint: no other step will either
          raise UserError(f"the checkpoint in {directory} does not match the model ({_first_line(e)}); use the "
                          "config it was trained with") from None
        failures.append(f"step {step}: {_first_line(e)}")
        if kind == BEST:  # falling back to an older best model would be a silently different model
          break
        continue
      if failures:
        logging.warning("the %s checkpoint in %s is damaged (%s); using step %d instead", kind, directory,
                        "; ".join(failures), step)
      return restored
  raise UserError(f"the {kind} checkpoint in {directory} is damaged ({'; '.join(failures)}); retrain it "
                  "(lm-jax-train --overwrite, or --resume from a readable latest checkpoint) or restore a copy "
                  "of the workdir")


def _is_shape_mismatch(e: Exception) -> bool:
  """Orbax's error for a requested shape the stored array does not have (it has no type of its own)."""
  return isinstance(e, ValueError) and "not compatible with the stored shape" in str(e)


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
