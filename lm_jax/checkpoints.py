"""Checkpoints in the workdir with orbax: `latest` (to resume) and `best` (best validation loss).

Orbax writes each checkpoint into a temporary directory and renames it once complete, and the
manager removes an old step only after the new one is committed, so a crash mid-write leaves the
previous checkpoint intact. A checkpoint damaged later (a truncated or lost file) fails to restore:
the one before it is used instead, with a warning. Each checkpoint carries its metadata (vocabulary,
config, epoch, lr, losses) as JSON beside the arrays, so it is self-contained. With several
processes every one of them calls save and restore; orbax has each write its own shards.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from lm_jax.errors import UserError

BEST = "best"
LATEST = "latest"
KEEP = {BEST: 1, LATEST: 2}


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
  laid out on the devices like them, and its metadata. A shape mismatch is a UserError."""
  abstract = jax.tree.map(_abstract, like_state)
  restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
  restored = _restore_newest(workdir, kind, meta=ocp.args.JsonRestore(),
                             state=ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True))
  return restored.state, restored.meta


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _restore_newest(workdir: str, kind: str, **items: ocp.args.CheckpointArgs) -> Any:
  """Restores `items` from the newest step that can be read, warning about any newer one that cannot."""
  if latest_step(workdir, kind) is None:
    raise UserError(f"no {kind} checkpoint in {checkpoint_dir(workdir, kind)}; train a model there "
                    "first with lm-jax-train --workdir")
  failures = []
  with _manager(workdir, kind) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
      except (ValueError, KeyError, OSError) as e:  # tensorstore, JSON and file errors: this step is unusable
        failures.append(f"step {step}: {str(e).strip().splitlines()[0][:200]}")
        continue
      if failures:
        logging.warning("the %s checkpoint in %s is damaged (%s); using step %d instead", kind,
                        checkpoint_dir(workdir, kind), "; ".join(failures), step)
      return restored
  raise UserError(f"the checkpoint in {checkpoint_dir(workdir, kind)} does not match the model "
                  f"({failures[0]}); use the config it was trained with")
