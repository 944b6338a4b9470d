"""Checkpoints in the workdir with orbax: `latest` (to resume) and `best` (best validation loss).

Orbax writes each checkpoint into a temporary directory and renames it once complete, and the
manager removes an old step only after the new one is committed, so a crash mid-write leaves the
previous checkpoint intact. Each checkpoint carries its metadata (vocabulary, config, epoch, lr,
losses) as JSON beside the arrays, so it is self-contained.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

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
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()


def latest_step(workdir: str, kind: str) -> int | None:
  if not os.path.isdir(checkpoint_dir(workdir, kind)):
    return None
  with _manager(workdir, kind) as manager:
    return manager.latest_step()


def _require_step(workdir: str, kind: str) -> int:
  step = latest_step(workdir, kind)
  if step is None:
    raise UserError(f"no {kind} checkpoint in {checkpoint_dir(workdir, kind)}; train a model there "
                    "first with lm-jax-train --workdir")
  return step


def restore_meta(workdir: str, kind: str) -> dict:
  """The metadata of the newest checkpoint of `kind` (vocabulary, config, ...)."""
  step = _require_step(workdir, kind)
  with _manager(workdir, kind) as manager:
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def restore(workdir: str, kind: str, like_state: Any) -> tuple[Any, dict]:
  """The newest checkpoint of `kind`, shaped like `like_state`; a shape mismatch is a UserError."""
  step = _require_step(workdir, kind)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like_state)
  with _manager(workdir, kind) as manager:
    try:
      restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                              meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError) as e:
      first_line = str(e).strip().splitlines()[0][:200]
      raise UserError(f"the checkpoint in {checkpoint_dir(workdir, kind)} does not match the model "
                      f"({first_line}); use the config it was trained with") from None
  return restored.state, restored.meta
