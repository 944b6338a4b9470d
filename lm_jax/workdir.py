"""The workdir's guard: a run's config is recorded there, and a different run never overwrites it."""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Callable

import ml_collections

from lm_jax import parallel
from lm_jax.metrics import METRICS_FILE, TENSORBOARD_DIR
from lm_jax.errors import UserError

CONFIG_FILE = "config.json"
RUN_OUTPUTS = ("checkpoints", METRICS_FILE, TENSORBOARD_DIR, CONFIG_FILE)
# Fields a resumed run may change without becoming a different run.
RESUMABLE_CHANGES = ("epochs", "log_interval", "checkpoint_every")


def write_atomically(path: str, content: str | bytes) -> None:
  """Write text or bytes to a temporary file beside `path`, then rename: readers see the old or the new
  file, whole."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "wb" if isinstance(content, bytes) else "w") as f:
    f.write(content)
  os.replace(tmp, path)


def _flatten(d: dict, prefix: str = "") -> dict:
  flat = {}
  for k, v in d.items():
    flat.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return flat


def config_differences(old: dict, new: dict) -> list[str]:
  # Both as config.json holds them: JSON turns a tuple (optim.when) into a list, which is no difference.
  old_flat, new_flat = (_flatten(json.loads(json.dumps(d))) for d in (old, new))
  return [f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in sorted(old_flat.keys() | new_flat.keys())
          if old_flat.get(k) != new_flat.get(k) and k not in RESUMABLE_CHANGES]


# A config.json read back as the task's config, fields added since it was written at their defaults.
SavedConfig = Callable[[dict], ml_collections.ConfigDict]


def prepare(workdir: str, config: ml_collections.ConfigDict, resume: bool, overwrite: bool,
            saved_config: SavedConfig | None = None) -> bool:
  """Claims `workdir` for this run. Returns True if an earlier run of the same config is resumed (`saved_config`
  reads its config.json back: needed with `resume`)."""
  resuming = check(workdir, config, resume, overwrite, saved_config)
  claim(workdir, config, overwrite)
  return resuming


def check(workdir: str, config: ml_collections.ConfigDict, resume: bool, overwrite: bool,
          saved_config: SavedConfig | None) -> bool:
  """Raises UserError unless this run may use `workdir`; writes nothing. Returns True if an earlier run of
  the same config is resumed. With several processes every one checks."""
  resuming = _check(workdir, config, resume, overwrite, saved_config)
  parallel.barrier("workdir checked")  # no process may see the config file this run is about to write
  return resuming


def claim(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Records this run's config in `workdir` (created if need be), first removing the outputs of the run
  held there with `overwrite`. Process 0 alone writes."""
  if parallel.is_main_process():
    if overwrite:
      for name in RUN_OUTPUTS:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
          shutil.rmtree(path)
        elif os.path.exists(path):
          os.remove(path)
    os.makedirs(workdir, exist_ok=True)
    write_atomically(os.path.join(workdir, CONFIG_FILE), json.dumps(config.to_dict(), indent=2, sort_keys=True))
  parallel.barrier("workdir claimed")


def _check(workdir: str, config: ml_collections.ConfigDict, resume: bool, overwrite: bool,
           saved_config: SavedConfig | None) -> bool:
  if resume and overwrite:
    raise UserError("--resume and --overwrite contradict each other; pass one of them")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir!r} is a file; pass a directory to --workdir")
  config_path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(config_path) or overwrite:
    return False
  if not resume:
    raise UserError(f"workdir {workdir!r} already holds a run; pass --resume to continue it, "
                    "--overwrite to replace it, or use another --workdir")
  with open(config_path) as f:
    differences = config_differences(saved_config(json.load(f)).to_dict(), config.to_dict())
  if differences:
    raise UserError(f"workdir {workdir!r} holds a run of a different config ({'; '.join(differences[:3])}); "
                    "resume with the same config, or use another --workdir")
  return True


def drop_metrics_after(workdir: str, step: int) -> None:
  """Forgets the metrics a resumed run is about to record again: those logged after `step`."""
  path = os.path.join(workdir, METRICS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      kept = [line for line in f if _recorded_step(line) <= step]
    write_atomically(path, "".join(kept))


def _recorded_step(line: str) -> float:
  try:
    return json.loads(line)["step"]
  except (json.JSONDecodeError, KeyError):
    return math.inf  # a line torn by a kill in the middle of writing it
