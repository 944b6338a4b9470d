"""Checkpoint integrity: a damaged array file never yields a silently different model. `best` fails in
one line naming the damage and the fix; `latest` falls back to the step before, with a warning."""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil

import numpy as np
import pytest

from lm_jax import checkpoints, trained
from lm_jax.errors import UserError
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config
from tests.test_cli import assert_one_line_error, lm_jax


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("run"))
  train_and_evaluate(tiny_config(epochs=1), workdir)
  return workdir


def array_files(workdir: str, kind: str) -> list[str]:
  """Every file orbax wrote that holds array data (its OCDBT data files)."""
  step_dir = os.path.join(checkpoints.checkpoint_dir(workdir, kind), str(checkpoints.latest_step(workdir, kind)))
  return sorted(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True))


def flip_byte(path: str, offset: int) -> None:
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([byte ^ 0x01]))


def test_a_flipped_byte_anywhere_in_any_array_file_of_best_is_caught(run, tmp_path):
  """First, middle and last byte of every file holding the arrays: each flip is the clear line, before
  orbax reads anything (a flip orbax never reads, such as in a zstd frame's trailing checksum, too)."""
  relative = [os.path.relpath(p, run) for p in array_files(run, checkpoints.BEST)]
  assert len(relative) >= 2
  for i, name in enumerate(relative):
    for where in ("first", "middle", "last"):
      copy = str(tmp_path / f"{i}-{where}")
      shutil.copytree(run, copy)
      size = os.path.getsize(os.path.join(copy, name))
      flip_byte(os.path.join(copy, name), {"first": 0, "middle": size // 2, "last": size - 1}[where])
      with pytest.raises(UserError) as error:
        trained.load(copy)
      assert re.match(r"the best checkpoint in .*best is damaged \(step 1: state/.* missing or changed since "
                      r"written\); retrain it \(lm-jax-train --overwrite.*\) or restore a copy of the workdir$",
                      str(error.value)), str(error.value)
      shutil.rmtree(copy)


@pytest.mark.parametrize("command, args", [("evaluate", []), ("generate", ["--words=5"])])
def test_truncated_best_is_one_line_through_the_cli(run, tmp_path, command, args):
  copy = str(tmp_path / "run")
  shutil.copytree(run, copy)
  for path in array_files(copy, checkpoints.BEST):
    os.truncate(path, os.path.getsize(path) // 2)
  before = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(copy, "**"), recursive=True)}
  assert_one_line_error(lm_jax(command, f"--workdir={copy}", *args),
                        r"the best checkpoint in .* is damaged \(step 1: .*\); retrain it")
  assert {p: os.path.getmtime(p) for p in glob.glob(os.path.join(copy, "**"), recursive=True)} == before


def test_a_flipped_byte_in_latest_falls_back_to_the_step_before(tmp_path, caplog):
  workdir = str(tmp_path)
  states = {step: {"params": {"w": np.full((64, 32), step, np.float32), "b": np.arange(32, dtype=np.float32) * step}}
            for step in (1, 2)}
  for step, state in states.items():
    checkpoints.save(workdir, checkpoints.LATEST, step, state, {"step": step})
  for path in array_files(workdir, checkpoints.LATEST):
    flip_byte(path, os.path.getsize(path) // 2)
  with caplog.at_level(logging.WARNING):
    restored, meta = checkpoints.restore(workdir, checkpoints.LATEST, states[1])
  assert meta == {"step": 1}
  np.testing.assert_array_equal(restored["params"]["w"], states[1]["params"]["w"])
  assert "the latest checkpoint in" in caplog.text and "is damaged (step 2: " in caplog.text
  assert "using step 1 instead" in caplog.text


def test_a_checkpoint_without_checksums_still_loads(tmp_path, caplog):
  """Written before checksums existed (or killed between its commit and its checksums): restored
  unverified, with a warning."""
  workdir = str(tmp_path)
  state = {"params": {"w": np.ones((4, 3), np.float32)}}
  checkpoints.save(workdir, checkpoints.LATEST, 1, state, {"step": 1})
  os.remove(os.path.join(checkpoints.checkpoint_dir(workdir, checkpoints.LATEST), "1", checkpoints.CHECKSUMS_FILE))
  with caplog.at_level(logging.WARNING):
    restored, _ = checkpoints.restore(workdir, checkpoints.LATEST, state)
  np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
  assert "restoring it unverified" in caplog.text
