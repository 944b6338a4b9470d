"""The run machinery every task shares (language modelling in lm_jax/train.py; a second task plugs in the same
way): the workdir guard, exact resume from the `latest` checkpoint, the epoch loop under SIGTERM handling, the
NaN stop, checkpoints (one line on a full disk), log lines and metrics from process 0, the progress bar.

A task is a `Task`: functions over an immutable (TrainState, Progress) pair that return new values. `drive`
runs one:

    run = task.setup(config, workdir, mesh)            # data on the devices, model, optimiser, compiled steps
    state, progress = task.start(run, resuming)        # fresh from the seed, or the `latest` checkpoint's
    while epochs remain and the optimiser policy has not stopped:
      state, progress = task.train_epoch(run, state, progress, stop)
      state, progress = task.end_epoch(run, state, progress, stop, seconds)
    results = task.finish(run, state, progress)
"""

from __future__ import annotations

import dataclasses
import errno
import math
import sys
import time
from typing import Any, Callable, NamedTuple

import ml_collections
from jax.sharding import Mesh
from tqdm import tqdm

from lm_jax import checkpoints, parallel, workdir as workdir_lib
from lm_jax.errors import Preempted, UserError
from lm_jax.metrics import MetricsWriter


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where the loop stands, on the host: the `latest` checkpoint's metadata (beside the task's own)."""

  lr: float                         # of the epoch under way
  epochs_done: int = 0
  batch: int = 0                    # batches (LM: windows) done of the epoch under way
  step: int = 0                     # train steps taken in all
  best_val_loss: float = math.inf
  train_loss_sum: float = 0.0       # of the batches done of the epoch under way: the epoch's mean train loss
  policy: dict = dataclasses.field(default_factory=dict)  # the optimiser's epoch policy's record (optim.py)
  stopped: bool = False             # the optimiser's policy ended training (fine-tuning's stop)

  def as_meta(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_meta(cls, meta: dict) -> Progress:
    # Checkpoints written before these names: `window`, `converged`, and nt_asgd's `val_history` at the top level.
    legacy = {"batch": meta.get("window"), "stopped": meta.get("converged"),
              "policy": {"val_history": meta["val_history"]} if "val_history" in meta else None}
    fields = {f.name: meta.get(f.name, legacy.get(f.name)) for f in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in fields.items() if value is not None})


class Report:
  """Log lines and metrics, from process 0 only: every process computes the same numbers."""

  def __init__(self):
    self.enabled = parallel.is_main_process()
    self._metrics: MetricsWriter | None = None

  def open_metrics(self, workdir: str, resumed_at: int | None) -> None:
    """Starts the metrics files; a run resumed at step `resumed_at` first forgets what was logged after it."""
    if self.enabled:
      if resumed_at is not None:
        workdir_lib.drop_metrics_after(workdir, resumed_at)
      self._metrics = MetricsWriter(workdir, resumed_at)

  def line(self, text: str) -> None:
    if self.enabled:
      tqdm.write(text)

  def scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self.enabled:
      self._metrics.write(step, scalars)

  def bar(self, total: int, initial: int, desc: str) -> tqdm:
    """A progress bar on a terminal (process 0), nothing elsewhere."""
    return tqdm(total=total, initial=initial, desc=desc, leave=False,
                disable=not (self.enabled and sys.stderr.isatty()))

  def close(self) -> None:
    if self._metrics is not None:
      self._metrics.close()


class EpochTiming(NamedTuple):
  first_batch: int   # where this process started the epoch (past 0 when it resumed mid-epoch)
  seconds: float     # its time on the epoch's training part, compilation included


class Task(NamedTuple):
  """A task's parts, each a function; `Run` is whatever the task's setup returns (it must have `report`)."""

  validate: Callable[[ml_collections.ConfigDict], None]
  saved_config: Callable[[dict], ml_collections.ConfigDict]  # a config.json read back, new fields at defaults
  setup: Callable[[ml_collections.ConfigDict, str, Mesh], Any]
  start: Callable[[Any, bool], tuple[Any, Progress]]
  begin: Callable[[Any, Any, Progress, bool], None]  # (run, state, progress, resuming), once the workdir is claimed
  train_epoch: Callable[[Any, Any, Progress, parallel.StopSignal], tuple[Any, Progress]]
  end_epoch: Callable[[Any, Any, Progress, parallel.StopSignal, EpochTiming], tuple[Any, Progress]]
  finish: Callable[[Any, Any, Progress], dict[str, float]]


def drive(task: Task, config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
          overwrite: bool = False, mesh: Mesh | None = None) -> dict[str, float]:
  """Trains `task` per `config` over `mesh` (default: every device of every process) into `workdir`, returns
  the final metrics. Bad input fails before anything is written. Raises Preempted, once a checkpoint is
  written, on SIGTERM."""
  task.validate(config)
  mesh = parallel.data_mesh() if mesh is None else mesh
  run = task.setup(config, workdir, mesh)
  resuming = workdir_lib.check(workdir, config, resume, overwrite, task.saved_config)
  state, progress = task.start(run, resuming)
  workdir_lib.claim(workdir, config, overwrite)
  run.report.open_metrics(workdir, resumed_at=progress.step if resuming else None)
  try:
    task.begin(run, state, progress, resuming)
    with parallel.StopSignal() as stop:
      while progress.epochs_done < config.epochs and not progress.stopped:
        first_batch, epoch_start = progress.batch, time.time()
        state, progress = task.train_epoch(run, state, progress, stop)
        timing = EpochTiming(first_batch, time.time() - epoch_start)
        state, progress = task.end_epoch(run, state, progress, stop, timing)
    return task.finish(run, state, progress)
  finally:
    run.report.close()  # metrics written so far reach the disk, however the run ends


def save(workdir: str, kind: str, step: int, state: dict, meta: dict) -> None:
  """checkpoints.save, with a full disk as one line: orbax commits a step only once it is whole, so the
  checkpoint before it is still there to resume from."""
  try:
    checkpoints.save(workdir, kind, step, state, meta)
  except Exception as e:
    if not _disk_full(e):
      raise
    raise UserError(f"no space left on the device while writing the {kind} checkpoint (step {step}) in "
                    f"{checkpoints.checkpoint_dir(workdir, kind)}; the one before it is kept: free space, "
                    "then run the same command with --resume") from None


def checkpoint_mid_epoch(workdir: str, progress: Progress, epoch_length: int, every: int,
                         stop: parallel.StopSignal | None, step_loss: Callable[[], float],
                         save_latest: Callable[[], None]) -> None:
  """After a train step: the `latest` checkpoint every `every` steps (0: none) and when SIGTERM asked to stop, then
  Preempted. Not at the epoch's last batch: the epoch end, which follows at once, checkpoints then. A diverged
  state (`step_loss()`, the step's loss) is never checkpointed."""
  stopping = stop is not None and stop.reached(progress.step)
  if progress.batch < epoch_length and (stopping or (every and progress.step % every == 0)):
    epoch = progress.epochs_done + 1
    stop_if_diverged(workdir, step_loss(), f"training loss at epoch {epoch}, batch {progress.batch}")
    save_latest()
    if stopping:
      raise preempted(workdir, f"epoch {epoch}, batch {progress.batch}/{epoch_length}", progress.step)


RESUME_HINT = "; run the same command with --resume to continue"  # a caller that resumes otherwise swaps it


def preempted(workdir: str, where: str, step: int) -> Preempted:
  return Preempted(f"stopped by SIGTERM at {where} (step {step}) with a checkpoint in "
                   f"{checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)}{RESUME_HINT}")


def stop_if_diverged(workdir: str, loss: float, what: str) -> None:
  if not math.isfinite(loss):
    raise TrainingDiverged(f"{what} became {loss}; the last good checkpoint in "
                           f"{checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)} is kept; lower "
                           "--config.optim.lr or --config.optim.clip and train again")


def _disk_full(error: BaseException | None) -> bool:
  """Whether `error` or one it came from is ENOSPC (orbax re-raises its writer threads' errors, sometimes wrapped)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    error = error.__cause__ or error.__context__
  return False
