"""The language-modelling task: the reference training recipe around the pure train step, as functions over
(TrainState, Progress) that lm_jax/runner.py drives.

Per epoch: the state starts at zeros, every window is one compiled `train_step(state, window_at, data)` call
spread over the device mesh, then the validation split is scored in one compiled scan. Between epochs the
optimiser's epoch policy (optim.py) gives the next lr (and NT-ASGD's switch); the best model is checkpointed
whenever validation improves, and the end scores test with it.

    run = lm_run.setup_run(config, workdir)             # writes nothing (lm_jax/lm_run.py)
    state, progress = lm_run.start(run, resuming=False)
    state, progress = train_windows(run, state, progress, lm_run.epoch_windows(run, 1)[:100])  # windows in order
    state, progress = train_epoch(run, state, progress, stop)  # the rest of the epoch
    state, progress = end_epoch(run, state, progress, stop, timing)

Exact resume: the `latest` checkpoint holds the whole TrainState (parameters, optimiser state, carried
state, dropout key, step) and, as metadata, the `Progress` (epochs done, windows done of the next one,
step, lr, best validation loss, the policy's record). It is written every `checkpoint_every` windows, at
each epoch end, and when SIGTERM asks the run to stop; a resumed run replays from there exactly what the
uninterrupted run computes.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from lm_jax import checkpoints, config as config_lib, finetuning, optim, parallel, runner
from lm_jax.lm_run import (Run, begin, epoch_train_split, epoch_windows, finish, floor_note, save_latest, setup_run,
                           start)
from lm_jax.runner import Progress
from lm_jax.steps import TrainState, WindowAt


def train_windows(run: Run, state: TrainState, progress: Progress, windows: list[WindowAt],
                  stop: parallel.StopSignal | None = None, *,
                  epoch_length: int | None = None) -> tuple[TrainState, Progress]:
  """`windows`, the next ones of the epoch under way (from window `progress.batch` on), in order. Logs interval
  means every `log_interval` windows like the reference, checkpoints every `checkpoint_every` steps, and on
  SIGTERM checkpoints and stops (the epoch's last window excepted: the epoch end, which follows at once,
  checkpoints then). `epoch_length`: the epoch's windows in all (default: where `windows` end)."""
  config, epoch, first = run.config, progress.epochs_done + 1, progress.batch
  total = first + len(windows) if epoch_length is None else epoch_length
  train = epoch_train_split(run, epoch)
  if first == 0:
    carry = parallel.put_tree(run.model.init_carry(config.batch_size), run.mesh, parallel.CARRY)
    state = state._replace(carry=carry)
  # The epoch's lr (and trainable layer groups) as arrays on the mesh, like the ones the step hands back: one compiled
  # program for every epoch.
  on_mesh = lambda value: parallel.put(value, run.mesh, parallel.REPLICATED)
  state = state._replace(opt_state=finetuning.at_epoch(config.optim, state.opt_state, progress.lr, epoch, on_mesh))
  interval, interval_start = [], time.time()
  # train_loss_sum adds the losses one window at a time, in order, so that a resumed (or continued) epoch sums
  # them as the uninterrupted one does: those before `first`, then each interval as it is logged, and at a
  # checkpoint or the return those not logged yet.
  bar = run.report.bar(total, first, f"epoch {epoch}")
  for window in windows:
    state, step_metrics = run.train_step(state, window, train.padded_TxB)
    if progress.batch == first:
      jax.block_until_ready(step_metrics)
      run.report.line(f"| first train step of the epoch, compilation included: {time.time() - interval_start:.1f}s")
    progress = dataclasses.replace(progress, step=progress.step + 1, batch=progress.batch + 1)
    interval.append(step_metrics)
    bar.update()
    if progress.batch % config.log_interval == 0 or progress.batch == total:
      logged = jax.device_get(interval)
      progress = dataclasses.replace(progress, train_loss_sum=_add_losses(progress.train_loss_sum, logged))
      _log_interval(run, logged, time.time() - interval_start, progress, total)
      interval, interval_start = [], time.time()
    runner.checkpoint_mid_epoch(run.workdir, progress, total, config.checkpoint_every, stop,
                                lambda: float(step_metrics["loss"]),
                                lambda: save_latest(run, state, _with_unlogged(progress, interval)))
  bar.close()
  return state, _with_unlogged(progress, interval)


def train_epoch(run: Run, state: TrainState, progress: Progress,
                stop: parallel.StopSignal) -> tuple[TrainState, Progress]:
  """The rest of the epoch under way: its windows from `progress.batch` on."""
  windows = epoch_windows(run, progress.epochs_done + 1)
  return train_windows(run, state, progress, windows[progress.batch:], stop, epoch_length=len(windows))


def _with_unlogged(progress: Progress, interval: list) -> Progress:
  """`progress` with the losses of the windows not logged yet added to the epoch's sum."""
  return dataclasses.replace(progress, train_loss_sum=_add_losses(progress.train_loss_sum, jax.device_get(interval)))


def _log_interval(run: Run, interval: list[dict[str, np.ndarray]], seconds: float, progress: Progress,
                  windows: int) -> None:
  """One reference-style line and one metrics record; every value is a mean over the interval's windows:
  train_loss of their mean token NLL, grad_norm of their global gradient norm before the clip."""
  mean_loss = float(np.mean([m["loss"] for m in interval]))
  epoch = progress.epochs_done + 1
  runner.stop_if_diverged(run.workdir, mean_loss, f"training loss at epoch {epoch}, batch {progress.batch}")
  ms_per_batch = seconds * 1000 / len(interval)
  run.report.line(f"| epoch {epoch:3d} | {progress.batch:5d}/{windows:5d} batches | lr {progress.lr:.4g} | "
                  f"ms/batch {ms_per_batch:5.2f} | loss {mean_loss:5.2f} | ppl {optim.perplexity(mean_loss):8.2f}")
  run.report.scalars(progress.step, {"train_loss": mean_loss, "train_ppl": optim.perplexity(mean_loss),
                                     "ms_per_batch": ms_per_batch, "lr": progress.lr,
                                     "grad_norm": float(np.mean([m["grad_norm"] for m in interval]))})


def end_epoch(run: Run, state: TrainState, progress: Progress, stop: parallel.StopSignal,
              timing: runner.EpochTiming) -> tuple[TrainState, Progress]:
  """Validation (of what the optimiser's policy evaluates: NT-ASGD's average once it averages), the epoch's
  metrics record, the best checkpoint, the policy's next lr (and switch or stop), and the epoch's `latest`
  checkpoint. `timing`: this process trained the epoch's windows from `first_batch` on in `seconds`."""
  config, epoch, seconds = run.config, progress.epochs_done + 1, timing.seconds
  windows = epoch_windows(run, epoch)
  train_loss = progress.train_loss_sum / len(windows)  # the mean of every window's mean token NLL
  tokens = sum(int(w.length) for w in windows[timing.first_batch:]) * config.batch_size
  params = run.policy.evaluation_params(state.opt_state, state.params)
  val_loss = run.evaluator.mean_nll(params, run.valid)
  runner.stop_if_diverged(run.workdir, val_loss, f"validation loss after epoch {epoch}")
  improved = val_loss < progress.best_val_loss
  run.report.line("-" * 89)
  run.report.line(f"| end of epoch {epoch:3d} | time: {seconds:5.2f}s | valid loss {val_loss:5.2f} | "
                  f"valid ppl {optim.perplexity(val_loss):8.2f}" + floor_note(run, "valid", val_loss))
  run.report.line("-" * 89)
  run.report.scalars(progress.step, {
      "valid_loss": val_loss, "valid_ppl": optim.perplexity(val_loss), "epoch": epoch, "lr": progress.lr,
      "epoch_train_loss": train_loss, "epoch_train_ppl": optim.perplexity(train_loss),
      "epoch_seconds": seconds, "tokens_per_second": tokens / seconds,
      "num_params": sum(x.size for x in jax.tree.leaves(state.params))})
  if improved:
    progress = dataclasses.replace(progress, best_val_loss=val_loss)
    runner.save(run.workdir, checkpoints.BEST, epoch, {"params": params},
                {**run.meta, "epoch": epoch, "val_loss": val_loss})
  decided = run.policy.end_epoch(config.optim, state.opt_state, progress.policy, progress.lr, epoch, val_loss,
                                 improved, finetuning=bool(config.finetune_from))
  if decided.note:
    run.report.line(decided.note)
  state = state._replace(opt_state=decided.opt_state)
  progress = dataclasses.replace(progress, lr=decided.lr, policy=decided.policy_state, stopped=decided.stop,
                                 epochs_done=epoch, batch=0, train_loss_sum=0.0)
  save_latest(run, state, progress)
  if stop.requested:
    raise runner.preempted(run.workdir, f"the end of epoch {epoch}", progress.step)
  return state, progress


def _add_losses(total: float, step_metrics: list[dict[str, np.ndarray]]) -> float:
  for metrics in step_metrics:
    total += float(metrics["loss"])
  return total


LANGUAGE_MODELLING = runner.Task(validate=config_lib.validate, saved_config=config_lib.from_saved, setup=setup_run,
                                 start=start, begin=begin, train_epoch=train_epoch, end_epoch=end_epoch, finish=finish)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
                       overwrite: bool = False, mesh: Mesh | None = None) -> dict[str, float]:
  """Trains a language model per `config` over `mesh` (default: every device of every process), checkpoints into
  `workdir`, returns the final metrics. Raises runner.Preempted, once a checkpoint is written, on SIGTERM."""
  return runner.drive(LANGUAGE_MODELLING, config, workdir, resume=resume, overwrite=overwrite, mesh=mesh)
