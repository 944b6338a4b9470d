"""Exact resume: a run killed with SIGKILL at a random step, a run stopped with SIGTERM, and a run whose
newest checkpoint was damaged on disk all end, once resumed, bit for bit where the uninterrupted run ends."""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from lm_jax import checkpoints, lm_run, metrics, runner
from lm_jax.errors import UserError
from lm_jax.models.registry import model_from_config
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 180
WINDOWS = 30  # per epoch: 2408 tokens in 8 columns make 301 rows


def config(**overrides):
  """Two epochs of 30 windows with dropout, a log line every window, `latest` every 4 windows."""
  c = tiny_config(**{"model.dropout": 0.3, "epochs": 2, "log_interval": 1, "checkpoint_every": 4, **overrides})
  c.data.synthetic.train_tokens = 2408
  return c


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[str, dict]:
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  return workdir, train_and_evaluate(config(), workdir)


def die_at_save(kind: str, step: int, *, before: bool = False) -> None:
  """A hook for the config file of a run in a child process: SIGKILL right after (or right before) writing
  checkpoint `step` of `kind`."""
  save = checkpoints.save

  def dying_save(workdir: str, saved_kind: str, saved_step: int, state, meta: dict) -> None:
    if (saved_kind, saved_step) == (kind, step) and before:
      os.kill(os.getpid(), signal.SIGKILL)
    save(workdir, saved_kind, saved_step, state, meta)
    if (saved_kind, saved_step) == (kind, step):
      os.kill(os.getpid(), signal.SIGKILL)

  checkpoints.save = dying_save


def sigterm_in_first_evaluation() -> None:
  """A hook for the config file of a run in a child process: SIGTERM arrives while epoch 1 is evaluated."""
  from lm_jax.evaluate import Evaluator
  mean_nll, calls = Evaluator.mean_nll, []

  def interrupted_mean_nll(self, *args, **kwargs):
    calls.append(None)
    if len(calls) == 1:
      os.kill(os.getpid(), signal.SIGTERM)
    return mean_nll(self, *args, **kwargs)

  Evaluator.mean_nll = interrupted_mean_nll


def run_cli_until(tmp_path, step: int | None, sig: signal.Signals | None = None, hook: str = "") -> tuple[int, str]:
  """lm-jax-train on config(), sent `sig` once it logs training step `step` (never if None); `hook` is a
  call of this module's run in the child first. Returns (exit status, stderr)."""
  config_file = tmp_path / "config.py"
  config_file.write_text(f"from tests import test_resume\n\ntest_resume.{hook or 'config'}\n\n\n"
                         "def get_config():\n  return test_resume.config()\n")
  with open(tmp_path / "stderr.txt", "w+") as stderr:
    process = subprocess.Popen([sys.executable, "-m", "lm_jax.cli.train", f"--config={config_file}",
                                f"--workdir={tmp_path / 'run'}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(TIMEOUT_S, process.kill)
    watchdog.start()
    try:
      for line in process.stdout:
        logged = re.match(r"\| epoch +(\d+) \| +(\d+)/ +\d+ batches", line)
        if step is not None and logged and (int(logged[1]) - 1) * WINDOWS + int(logged[2]) >= step:
          process.send_signal(sig)
          break
      process.communicate()
    finally:
      watchdog.cancel()
    stderr.seek(0)
    return process.returncode, stderr.read()


def params_of(workdir: str, kind: str) -> dict:
  vocab_size = len(checkpoints.restore_meta(workdir, kind)["vocab"])
  like = {"params": model_from_config(config().model, vocab_size).init_params(0)}
  return checkpoints.restore(workdir, kind, like)[0]["params"]


def recorded(workdir: str, name: str) -> list[float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [record[name] for record in map(json.loads, f) if name in record]


def tensorboard_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """(step, value) per tag as TensorBoard shows them: event files in order of their names, each a TFRecord
  stream (length, its CRC, an Event, its CRC); a session START at step s hides the events before it of
  steps >= s (what SummaryWriter(purge_step=s) writes on resume)."""
  event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
  scalars: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      data = f.read()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        scalars = {tag: [(s, v) for s, v in values if s < event.step] for tag, values in scalars.items()}
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_a_resume_within_the_same_second_keeps_the_earlier_runs_events(tmp_path, monkeypatch):
  """tensorboardX names an event file by the second it was opened; a resume in that second must not erase the
  events of the run before it."""
  pytest.importorskip("tensorboardX")
  monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
  first = metrics.MetricsWriter(str(tmp_path))
  first.write(1, {"train_loss": 5.0})
  first.close()
  resumed = metrics.MetricsWriter(str(tmp_path), resumed_at=1)
  resumed.write(2, {"train_loss": 4.0})
  resumed.close()
  assert tensorboard_scalars(str(tmp_path))["train_loss"] == [(1, 5.0), (2, 4.0)]


def assert_same_tensorboard(workdir: str, expected_workdir: str, resumed_at: int, killed: bool) -> None:
  """TensorBoard shows the steps of the uninterrupted run, in order, none twice (the timings aside).
  A SIGKILL may lose the newest events before the checkpoint (written every log interval, in the test's
  config every step); those after it are recorded again."""
  got, expected = tensorboard_scalars(workdir), tensorboard_scalars(expected_workdir)
  assert got.keys() == expected.keys()
  for tag in expected:
    keep = (lambda step: step > resumed_at) if killed else (lambda step: True)
    if tag in ("ms_per_batch", "epoch_seconds", "tokens_per_second"):
      got_tag, expected_tag = [s for s, _ in got[tag] if keep(s)], [s for s, _ in expected[tag] if keep(s)]
    else:
      got_tag, expected_tag = [x for x in got[tag] if keep(x[0])], [x for x in expected[tag] if keep(x[0])]
    assert got_tag == expected_tag, tag
    steps = [s for s, *_ in got[tag]]
    assert steps == sorted(steps) and len(steps) <= len(expected[tag]), tag


def assert_same_as_uninterrupted(workdir: str, results: dict, uninterrupted: tuple[str, dict], *, resumed_at: int,
                                 killed: bool = False) -> None:
  expected_workdir, expected_results = uninterrupted
  assert results == expected_results
  assert_same_tensorboard(workdir, expected_workdir, resumed_at, killed)
  for kind in (checkpoints.LATEST, checkpoints.BEST):
    jax.tree.map(np.testing.assert_array_equal, params_of(workdir, kind), params_of(expected_workdir, kind))
  for name in ("train_loss", "valid_loss"):  # metrics recorded after the checkpoint were dropped, then recorded again
    assert recorded(workdir, name) == recorded(expected_workdir, name)


def resume_and_compare(tmp_path, uninterrupted: tuple[str, dict], *, killed: bool) -> None:
  workdir = str(tmp_path / "run")
  has_latest = checkpoints.latest_step(workdir, checkpoints.LATEST) is not None
  resumed_at = checkpoints.restore_meta(workdir, checkpoints.LATEST)["step"] if has_latest else 0
  results = train_and_evaluate(config(), workdir, resume=True)
  assert_same_as_uninterrupted(workdir, results, uninterrupted, resumed_at=resumed_at, killed=killed)


def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted):
  step = random.Random(14).randint(2, 40)  # seeded: a failure replays
  print(f"killing at step {step}")
  status, stderr = run_cli_until(tmp_path, step, signal.SIGKILL)
  assert status == -signal.SIGKILL, stderr[-3000:]
  resume_and_compare(tmp_path, uninterrupted, killed=True)


@pytest.mark.parametrize("hook, latest_left", [
    ("die_at_save('latest', 4, before=True)", None),  # before the first checkpoint: resume starts afresh
    ("die_at_save('latest', 30)", 30),                  # right after epoch 1's last checkpoint
    ("die_at_save('best', 1)", 28),                     # between epoch 1's best and latest checkpoints
])
def test_sigkill_at_checkpoint_edges_then_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted, hook,
                                                                             latest_left):
  status, stderr = run_cli_until(tmp_path, None, hook=hook)
  assert status == -signal.SIGKILL, stderr[-3000:]
  assert checkpoints.latest_step(str(tmp_path / "run"), checkpoints.LATEST) == latest_left
  resume_and_compare(tmp_path, uninterrupted, killed=True)


def test_sigterm_during_the_epoch_end_evaluation_then_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted):
  status, stderr = run_cli_until(tmp_path, None, hook="sigterm_in_first_evaluation()")
  assert status == 143, stderr[-3000:]
  assert "Traceback" not in stderr
  assert re.search(r"^train.py: stopped by SIGTERM at the end of epoch 1 \(step 30\)", stderr, re.M), stderr[-3000:]
  resume_and_compare(tmp_path, uninterrupted, killed=False)


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_one_before(tmp_path, uninterrupted, monkeypatch):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler

  save_json = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def disk_full_at_step_12(self, item, directory):
    if f"{os.sep}latest{os.sep}12." in str(directory):  # the arrays are written, the metadata is not
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    await save_json(self, item, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full_at_step_12)
  workdir = str(tmp_path / "run")
  with pytest.raises(UserError) as error:
    train_and_evaluate(config(), workdir)
  assert re.fullmatch(r"no space left on the device while writing the latest checkpoint \(step 12\) in "
                      r"\S+/checkpoints/latest; the one before it is kept: free space, then run the same command "
                      r"with --resume", str(error.value)), str(error.value)
  assert checkpoints.latest_step(workdir, checkpoints.LATEST) == 8
  monkeypatch.undo()
  resume_and_compare(tmp_path, uninterrupted, killed=False)


def test_nan_in_the_middle_of_an_epoch_stops_and_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted,
                                                                                     monkeypatch):
  """Step 14 returns poisoned parameters and a NaN loss: the run stops there with TrainingDiverged, and the
  checkpoint of step 12 (before it) is what a resume continues from."""
  make_train_step = lm_run.make_train_step

  def poisoned_make_train_step(*args, **kwargs):
    step = make_train_step(*args, **kwargs)

    def train_step(state, window_at, data):
      state, metrics = step(state, window_at, data)
      if int(state.step) == 14:
        nan = lambda x: x * np.float32("nan")
        state, metrics = state._replace(params=jax.tree.map(nan, state.params)), jax.tree.map(nan, metrics)
      return state, metrics

    return train_step

  monkeypatch.setattr(lm_run, "make_train_step", poisoned_make_train_step)
  workdir = str(tmp_path / "run")
  with pytest.raises(runner.TrainingDiverged, match=r"training loss at epoch 1, batch 14 became nan; the last good "
                     r"checkpoint in .* is kept"):
    train_and_evaluate(config(), workdir)
  assert checkpoints.latest_step(workdir, checkpoints.LATEST) == 12
  monkeypatch.undo()
  resume_and_compare(tmp_path, uninterrupted, killed=False)


def test_sigterm_checkpoints_and_exits_then_resume_gives_the_uninterrupted_run(tmp_path, uninterrupted):
  step = random.randint(2, 40)
  print(f"stopping at step {step}")
  status, stderr = run_cli_until(tmp_path, step, signal.SIGTERM)
  assert status == 143, stderr[-3000:]
  assert "Traceback" not in stderr
  assert re.search(r"^train.py: stopped by SIGTERM at (epoch \d, batch \d+/30|the end of epoch \d) \(step \d+\) with a "
                   r"checkpoint in .*; run the same command with --resume to continue$", stderr, re.M), stderr[-3000:]
  saved_step = checkpoints.restore_meta(str(tmp_path / "run"), checkpoints.LATEST)["step"]
  assert step <= saved_step < 2 * WINDOWS
  results = train_and_evaluate(config(), str(tmp_path / "run"), resume=True)
  assert_same_as_uninterrupted(str(tmp_path / "run"), results, uninterrupted, resumed_at=saved_step)


# Orbax leaves an asyncio callback behind after the failed restore; Python reports it at exit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, uninterrupted, caplog):
  workdir = str(tmp_path / "run")
  train_and_evaluate(config(epochs=1), workdir)
  newest = checkpoints.latest_step(workdir, checkpoints.LATEST)
  assert newest == WINDOWS
  data_files = glob.glob(os.path.join(checkpoints.checkpoint_dir(workdir, checkpoints.LATEST), str(newest), "state",
                                      "d", "*"))
  assert data_files
  for path in data_files:
    os.truncate(path, os.path.getsize(path) // 2)
  with caplog.at_level(logging.WARNING):
    results = train_and_evaluate(config(), workdir, resume=True)
  assert re.search(rf"the latest checkpoint in .* is damaged \(step {newest}: .*\); using step 28 instead", caplog.text)
  assert_same_as_uninterrupted(workdir, results, uninterrupted, resumed_at=28)
