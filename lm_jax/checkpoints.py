"""Checkpoints in the workdir with orbax: `latest` (to resume) and `best` (best validation loss).

Orbax writes each checkpoint into a temporary directory and renames it once complete, and the
manager removes an old step only after the new one is committed, so a crash mid-write leaves the
previous checkpoint intact. Each checkpoint carries its metadata (vocabulary, config, epoch, lr,
losses) as JSON beside the arrays, so it is self-contained, and, once committed, a CRC-32 of every
file holding its arrays (CHECKSUMS_FILE), which restore checks before orbax reads anything. A
checkpoint damaged later (a truncated, lost or altered file) fails that check or fails to restore:
for `latest` the one before it is used instead, with a warning; for `best` (what evaluate, generate
and export read) it is a UserError naming it, never a silently different model. Checkpoints without
the checksums (written before them, or killed between the commit and the checksums) restore
unverified, with a warning. With several processes every one of them calls save and restore; orbax
has each write its own shards, and process 0 checksums them all.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from lm_jax import parallel
from lm_jax.errors import UserError
from lm_jax.workdir import write_atomically

BEST = "best"
LATEST = "latest"
KEEP = {BEST: 1, LATEST: 2}
CHECKSUMS_FILE = "lm_jax_checksums.json"  # in a step's directory: {array file's path in it: CRC-32 of its bytes}


class DamagedCheckpoint(Exception):
  """A checkpoint's array files do not match the checksums written with them."""


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
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()
  parallel.barrier(f"checkpoint {kind} {step} written")
  if parallel.is_main_process():
    step_dir = os.path.join(checkpoint_dir(workdir, kind), str(step))
    write_atomically(os.path.join(step_dir, CHECKSUMS_FILE), json.dumps(array_file_checksums(step_dir)))


def latest_step(workdir: str, kind: str) -> int | None:
  if not os.path.isdir(checkpoint_dir(workdir, kind)):
    return None
  with _manager(workdir, kind) as manager:
    return manager.latest_step()


def restore_meta(workdir: str, kind: str) -> dict:
  """The metadata of the newest readable checkpoint of `kind` (vocabulary, config, ...)."""
  return _restore_newest(workdir, kind, meta=ocp.args.JsonRestore()).meta


def restore(workdir: str, kind: str, like_state: Any) -> tuple[Any, dict]:
  """The newest readable checkpoint of `kind`: the entries of its state that `like_state` names, shaped and
  laid out on the devices like them, and its metadata. A missing entry or a shape mismatch is a UserError."""
  abstract = jax.tree.map(_abstract, like_state)
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
  restored = _restore_newest(workdir, kind, meta=ocp.args.JsonRestore(),
                             state=ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True))
  # A partial restore hands back an entry the checkpoint lacks as its ShapeDtypeStruct, silently (a model of
  # another family or shape than the one saved).
  absent = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(restored.state)
            if isinstance(leaf, jax.ShapeDtypeStruct)]
  if absent:
    raise UserError(f"the checkpoint in {checkpoint_dir(workdir, kind)} does not match the model (it has no "
                    f"{absent[0]}); use the config it was trained with")
  return restored.state, restored.meta


def array_file_checksums(step_dir: str) -> dict[str, str]:
  """CRC-32 (hex) of every file under the step's `state` item (the arrays), by its path in the step."""
  sums = {}
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for name in sorted(files):
      path = os.path.join(root, name)
      crc = 0
      with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
          crc = zlib.crc32(chunk, crc)
      sums[os.path.relpath(path, step_dir)] = f"{crc:08x}"
  return sums


def _verify(step_dir: str) -> None:
  """Raises DamagedCheckpoint unless every array file is there with the checksum written for it. Done
  before orbax reads: a restore failing on one damaged file leaves tensorstore's other reads running."""
  try:
    with open(os.path.join(step_dir, CHECKSUMS_FILE)) as f:
      expected = json.load(f)
  except (OSError, ValueError):
    logging.log_first_n(logging.WARNING, "the checkpoint in %s has no readable %s (written before checksums, or "
                        "stopped right after its commit); restoring it unverified", 1, step_dir, CHECKSUMS_FILE)
    return
  actual = array_file_checksums(step_dir)
  damaged = sorted(path for path, crc in expected.items() if actual.get(path) != crc)
  if damaged:
    more = f" and {len(damaged) - 1} more file(s)" if len(damaged) > 1 else ""
    raise DamagedCheckpoint(f"{damaged[0]}{more} missing or changed since written")


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _restore_newest(workdir: str, kind: str, **items: ocp.args.CheckpointArgs) -> Any:
  """Restores `items` from the newest step that can be read, warning about any newer one that cannot."""
  if latest_step(workdir, kind) is None:
    raise UserError(f"no {kind} checkpoint in {checkpoint_dir(workdir, kind)}; train a model there "
                    "first (lm-jax-train or lm-jax-classify --workdir)")
  directory, failures = checkpoint_dir(workdir, kind), []
  with _manager(workdir, kind) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        if "state" in items:
          _verify(os.path.join(directory, str(step)))
        restored = manager.restore(step, args=ocp.args.Composite(**items))
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
