"""The classification task: Kim's training recipe around the compiled step, as functions over (TrainState,
Progress) that lm_jax/runner.py drives, and cross-validation as one run per fold.

Per epoch: the training split in length-bucketed batches shuffled from (seed, epoch), one compiled step each; then
the dev split is scored and the best model (dev accuracy) kept; the optimiser's epoch policy gives the next lr.
The end scores test with the best model. A corpus without a test split (MR) is cross-validated: fold f's run lives
in `<workdir>/fold-<f>` (resumable like any run), and the folds' test accuracies are summarised as mean ± std.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from lm_jax import checkpoints, finetuning, parallel, runner, workdir as workdir_lib
from lm_jax.classify import config as config_lib, steps
from lm_jax.classify.data.config import load_corpus
from lm_jax.classify.data.corpus import LabelledCorpus
from lm_jax.classify.data.splits import Fold, evaluation_folds
from lm_jax.classify.run import Run, begin, epoch_batches, finish, save_latest, setup_run, split_scores, start
from lm_jax.runner import Progress
from lm_jax.steps import TrainState

SUMMARY_FILE = "cross_validation.json"


def train_epoch(run: Run, state: TrainState, progress: Progress,
                stop: parallel.StopSignal) -> tuple[TrainState, Progress]:
  """The rest of the epoch under way: its batches from `progress.batch` on. Logs interval means every
  `log_interval` batches, checkpoints every `checkpoint_every` steps, and on SIGTERM checkpoints and stops."""
  config, epoch = run.config, progress.epochs_done + 1
  batches = epoch_batches(run, epoch)
  if progress.batch == 0:
    state = state._replace(carry=steps.epoch_sums())
  # The epoch's lr and trainable layer groups, and each step's factor on that lr (lm_jax/finetuning.py).
  state = state._replace(opt_state=finetuning.at_epoch(config.optim, state.opt_state, progress.lr, epoch))
  # Committed to the device as the step's outputs are: a mix of new and committed arrays would be traced anew.
  state = jax.device_put(state, jax.local_devices()[0])
  lr_scales = finetuning.epoch_lr_scales(config.optim, epoch, config.epochs, len(run.model.layer_groups()),
                                         lambda e: len(batches))
  interval, interval_start = [], time.time()
  bar = run.report.bar(len(batches), progress.batch, f"epoch {epoch}")
  for batch, lr_scale in zip(batches[progress.batch:], lr_scales[progress.batch:]):
    state, step_metrics = run.train_step(state, batch, lr_scale)
    progress = dataclasses.replace(progress, step=progress.step + 1, batch=progress.batch + 1)
    interval.append(step_metrics)
    bar.update()
    if progress.batch % config.log_interval == 0 or progress.batch == len(batches):
      _log_interval(run, jax.device_get(interval), time.time() - interval_start, progress, len(batches),
                    progress.lr * float(lr_scale))
      interval, interval_start = [], time.time()
    runner.checkpoint_mid_epoch(run.workdir, progress, len(batches), config.checkpoint_every, stop,
                                lambda: float(step_metrics["loss"]), lambda: save_latest(run, state, progress))
  bar.close()
  return state, progress


def _log_interval(run: Run, interval: list[dict[str, np.ndarray]], seconds: float, progress: Progress,
                  batches: int, lr: float) -> None:
  """The interval's means; `lr`: the top group's at its last step (the epoch's lr times the step's factor)."""
  count = sum(float(m["count"]) for m in interval)
  loss = sum(float(m["loss"]) * float(m["count"]) for m in interval) / count
  accuracy = sum(float(m["correct"]) for m in interval) / count
  epoch = progress.epochs_done + 1
  runner.stop_if_diverged(run.workdir, loss, f"training loss at epoch {epoch}, batch {progress.batch}")
  run.report.line(f"| epoch {epoch:3d} | {progress.batch:5d}/{batches:5d} batches | lr {lr:.4g} | "
                  f"ms/batch {seconds * 1000 / len(interval):6.2f} | loss {loss:6.4f} | accuracy {accuracy:.4f}")
  run.report.scalars(progress.step, {"train_loss": loss, "train_accuracy": accuracy, "lr": lr,
                                     "grad_norm": float(np.mean([m["grad_norm"] for m in interval]))})


def end_epoch(run: Run, state: TrainState, progress: Progress, stop: parallel.StopSignal,
              timing: runner.EpochTiming) -> tuple[TrainState, Progress]:
  """Dev scores (of what the optimiser's policy evaluates), the epoch's record, the best checkpoint (dev
  accuracy), the policy's next lr, and the epoch's `latest` checkpoint."""
  epoch = progress.epochs_done + 1
  sums = jax.device_get(state.carry)
  train_loss, train_accuracy = float(sums["nll"] / sums["count"]), float(sums["correct"] / sums["count"])
  params = run.policy.evaluation_params(state.opt_state, state.params)
  dev = split_scores(run, params, run.data.splits["dev"])
  runner.stop_if_diverged(run.workdir, dev.nll, f"dev loss after epoch {epoch}")
  improved = dev.error < progress.best_val_loss  # the best model is the most accurate on dev, as Kim's
  run.report.line(f"| end of epoch {epoch:3d} | time: {timing.seconds:6.2f}s | train loss {train_loss:6.4f} | "
                  f"train accuracy {train_accuracy:.4f} | dev loss {dev.nll:6.4f} | dev accuracy {dev.accuracy:.4f}")
  run.report.scalars(progress.step, {
      "epoch": epoch, "lr": progress.lr, "epoch_train_loss": train_loss, "epoch_train_accuracy": train_accuracy,
      "dev_loss": dev.nll, "dev_accuracy": dev.accuracy, "dev_macro_f1": dev.macro_f1,
      "epoch_seconds": timing.seconds, "examples_per_second": float(sums["count"]) / timing.seconds})
  if improved:
    progress = dataclasses.replace(progress, best_val_loss=dev.error)
    runner.save(run.workdir, checkpoints.BEST, epoch, {"params": params},
                {**run.meta, "epoch": epoch, "dev_accuracy": dev.accuracy})
  decided = run.policy.end_epoch(run.config.optim, state.opt_state, progress.policy, progress.lr, epoch, dev.error,
                                 improved, finetuning=False)
  if decided.note:
    run.report.line(decided.note)
  state = state._replace(opt_state=decided.opt_state)
  progress = dataclasses.replace(progress, lr=decided.lr, policy=decided.policy_state, stopped=decided.stop,
                                 epochs_done=epoch, batch=0)
  save_latest(run, state, progress)
  if stop.requested:
    raise runner.preempted(run.workdir, f"the end of epoch {epoch}", progress.step)
  return state, progress


def task_for(corpus: LabelledCorpus, fold: Fold) -> runner.Task:
  """The classification task on one fold of `corpus` (read once for every fold)."""
  setup = lambda config, workdir, mesh: setup_run(config, workdir, corpus=corpus, fold=fold)  # one device
  return runner.Task(validate=config_lib.validate, saved_config=config_lib.from_saved, setup=setup, start=start,
                     begin=begin, train_epoch=train_epoch, end_epoch=end_epoch, finish=finish)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
                       overwrite: bool = False, mesh: Mesh | None = None) -> dict[str, float]:
  """Trains the classifier `config` describes into `workdir` (cross-validated: one run per fold under it) and
  returns the final metrics (cross-validated: each fold's, then the mean and std of their test accuracy)."""
  config_lib.validate(config)
  corpus = load_corpus(config.data)
  folds = evaluation_folds(corpus, config.data)
  if len(folds) == 1:
    return runner.drive(task_for(corpus, folds[0]), config, workdir, resume=resume, overwrite=overwrite, mesh=mesh)
  per_fold = [runner.drive(task_for(corpus, fold), config, os.path.join(workdir, f"fold-{f + 1}"), resume=resume,
                           overwrite=overwrite, mesh=mesh)
              for f, fold in enumerate(folds)]
  accuracies = np.array([result["test_accuracy"] for result in per_fold])
  summary = {"folds": len(folds), "test_accuracy_mean": float(accuracies.mean()),
             "test_accuracy_std": float(accuracies.std()), "test_accuracies": accuracies.tolist()}
  workdir_lib.write_atomically(os.path.join(workdir, SUMMARY_FILE), json.dumps(summary, indent=2))
  runner.Report().line(f"| {len(folds)}-fold cross-validation: test accuracy {100 * accuracies.mean():.2f} ± "
                       f"{100 * accuracies.std():.2f} (folds: {', '.join(f'{100 * a:.1f}' for a in accuracies)})")
  return summary
