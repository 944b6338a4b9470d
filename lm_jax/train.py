"""train_and_evaluate(config, workdir): the reference training recipe around the pure steps.

Per epoch: the state starts at zeros, every window is one compiled `train_step` call spread over the
device mesh, then the validation split is scored in one compiled scan. The lr rule runs on the host
between epochs, the best model is checkpointed whenever validation improves, and the end scores test
with it.

Exact resume: the `latest` checkpoint holds all the loop needs to go on where it stopped (parameters,
optimiser state, carried state, dropout key; as metadata the epochs done, the windows done of the
next one, the step, lr and best validation loss). It is written every `checkpoint_every` windows, at
each epoch end, and when SIGTERM asks the run to stop; a resumed run replays from there exactly what
the uninterrupted run computes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from lm_jax import checkpoints, config as config_lib, optim, parallel, steps, workdir as workdir_lib
from lm_jax.data.batching import DeviceSplit, put_on_device, window_bounds
from lm_jax.data.sources import Corpus, load_corpus
from lm_jax.errors import UserError
from lm_jax.metrics import MetricsWriter
from lm_jax.models.cells import State
from lm_jax.models.rnn_model import RNNModel, init_params, model_from_config, zero_carry


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


class Preempted(Exception):
  """SIGTERM stopped the run at a step boundary, after writing the checkpoint to resume from."""


@dataclasses.dataclass
class Evaluator:
  """Scores whole splits with one compiled scan over their windows, over `mesh` (default: every device)."""

  model: RNNModel
  bptt: int
  mesh: Mesh | None = None

  def __post_init__(self):
    self._eval_split = steps.make_eval_split(self.model, self.bptt, self.mesh)

  def mean_nll(self, params: steps.Params, split: DeviceSplit) -> float:
    """Sum of token NLL / tokens scored, the state carried from window to window from zeros."""
    starts_W, lengths_W = np.array(window_bounds(split.rows, self.bptt), np.int32).T
    nll_sums_W = self._eval_split(params, starts_W, lengths_W, split.batch_size, split.padded_TxB)
    return float(np.sum(np.asarray(nll_sums_W, np.float64)) / split.num_tokens_scored)


class _Report:
  """Log lines and metrics, from process 0 only: every process computes the same numbers."""

  def __init__(self, workdir: str):
    self.enabled = parallel.is_main_process()
    self._metrics = MetricsWriter(workdir) if self.enabled else None

  def line(self, text: str) -> None:
    if self.enabled:
      tqdm.write(text)

  def scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self.enabled:
      self._metrics.write(step, scalars)

  def close(self) -> None:
    if self.enabled:
      self._metrics.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
                       overwrite: bool = False, mesh: Mesh | None = None) -> dict[str, float]:
  """Trains per `config` over `mesh` (default: every device of every process), checkpoints into
  `workdir`, returns the final metrics. Raises Preempted, once a checkpoint is written, on SIGTERM."""
  config_lib.validate(config)
  mesh = parallel.data_mesh() if mesh is None else mesh
  parallel.require_divisible(config.batch_size, mesh)
  corpus = load_corpus(config.data)  # Bad data fails here, before the workdir is touched.
  resuming = workdir_lib.prepare(workdir, config, resume, overwrite)
  model = model_from_config(config.model, len(corpus.vocab))
  optimizer = optim.make_optimizer(config)
  params = init_params(model, config.seed, config.batch_size)
  # What the steps read and write, on the devices. rng is the dropout key: each step folds in its
  # number, each device its index.
  state = parallel.replicate({"params": params, "opt_state": optimizer.init(params),
                              "rng": jax.random.PRNGKey(config.seed + 1)}, mesh)
  state["carry"] = _zero_carry(model, config.batch_size, mesh)
  report = _Report(workdir)
  report.line(f"| corpus: {len(corpus.vocab):,} words; tokens " +
              ", ".join(f"{s} {len(ids):,}" for s, ids in corpus.ids.items()) +
              f" | model: {config.model.cell} {config.model.nlayers}x{config.model.nhid}, "
              f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters | devices: {mesh.size} "
              f"{mesh.devices.flat[0].platform} in {jax.process_count()} process(es)")

  train = put_on_device(corpus.ids["train"], config.batch_size, config.bptt, "train", mesh)
  valid = put_on_device(corpus.ids["valid"], config.eval_batch_size, config.bptt, "valid", mesh)
  test = put_on_device(corpus.ids["test"], config.eval_batch_size, config.bptt, "test", mesh)
  windows = window_bounds(train.rows, config.bptt)
  meta = {"vocab": list(corpus.vocab.words), "config": config.to_dict(), "windows": len(windows)}

  epochs_done, window, step, lr, best_val_loss = 0, 0, 0, config.lr, math.inf
  if resuming and checkpoints.latest_step(workdir, checkpoints.LATEST) is not None:
    state, saved = checkpoints.restore(workdir, checkpoints.LATEST, state)
    _require_same_data(saved, meta, workdir)
    epochs_done, window, step = saved["epoch"], saved["window"], saved["step"]
    lr, best_val_loss = saved["lr"], saved["best_val_loss"]
    report.line(f"| resuming after epoch {epochs_done}" + (f", window {window}/{len(windows)}" if window else "") +
                f" (step {step}, lr {lr:g}, best valid loss {best_val_loss:.3f})")
  if resuming and report.enabled:
    workdir_lib.drop_metrics_after(workdir, step)

  train_step = steps.make_train_step(model, optimizer, config.bptt, config.loss_reduction == "sum_over_time", mesh)
  evaluator = Evaluator(model, config.bptt, mesh)
  with parallel.StopSignal() as stop:
    for epoch in range(epochs_done + 1, config.epochs + 1):
      epoch_start = time.time()
      if window == 0:
        state["carry"] = _zero_carry(model, config.batch_size, mesh)
      # An array on the mesh, like the one the step hands back: one compiled program for every epoch.
      lr_on_mesh = parallel.put(np.float32(lr), mesh, parallel.REPLICATED)
      state["opt_state"] = optim.with_learning_rate(state["opt_state"], lr_on_mesh)
      save_within_epoch = functools.partial(_save_latest, workdir, meta, epoch - 1, lr, best_val_loss)
      state, step = _train_epoch(config, train_step, state, step, window, windows, train, epoch, lr, stop,
                                 save_within_epoch, report, workdir)
      window = 0
      val_loss = evaluator.mean_nll(state["params"], valid)
      _stop_if_diverged(val_loss, f"validation loss after epoch {epoch}", workdir)
      improved = val_loss < best_val_loss
      report.line("-" * 89)
      report.line(f"| end of epoch {epoch:3d} | time: {time.time() - epoch_start:5.2f}s | valid loss {val_loss:5.2f} | "
                  f"valid ppl {optim.perplexity(val_loss):8.2f}" + _floor_note(corpus, "valid", val_loss))
      report.line("-" * 89)
      report.scalars(step, {"valid_loss": val_loss, "valid_ppl": optim.perplexity(val_loss), "epoch": epoch, "lr": lr})
      if improved:
        best_val_loss = val_loss
        checkpoints.save(workdir, checkpoints.BEST, epoch, {"params": state["params"]},
                         {**meta, "epoch": epoch, "val_loss": val_loss})
      lr = optim.next_learning_rate(config, lr, epoch, improved)
      _save_latest(workdir, meta, epoch, lr, best_val_loss, state, 0, step)
      if stop.requested:
        raise Preempted(_preempted_message(workdir, f"the end of epoch {epoch}", step))

  best, _ = checkpoints.restore(workdir, checkpoints.BEST, {"params": state["params"]})
  results = {"valid_loss": evaluator.mean_nll(best["params"], valid), "test_loss": evaluator.mean_nll(best["params"], test)}
  results.update(valid_ppl=optim.perplexity(results["valid_loss"]), test_ppl=optim.perplexity(results["test_loss"]))
  if corpus.floor:
    results.update(valid_floor_ppl=math.exp(corpus.floor["valid"]), test_floor_ppl=math.exp(corpus.floor["test"]))
  report.line("=" * 89)
  report.line(f"| End of training | best model: valid ppl {results['valid_ppl']:8.2f}"
              f"{_floor_note(corpus, 'valid', results['valid_loss'])}")
  report.line(f"| End of training | test loss {results['test_loss']:5.2f} | test ppl {results['test_ppl']:8.2f}"
              f"{_floor_note(corpus, 'test', results['test_loss'])}")
  report.line("=" * 89)
  report.scalars(step, {k: v for k, v in results.items()})
  report.close()
  return results


def _train_epoch(config, train_step, state: dict, step: int, first_window: int, windows, train: DeviceSplit,
                 epoch: int, lr: float, stop: parallel.StopSignal, save: Callable[[dict, int, int], None],
                 report: _Report, workdir: str) -> tuple[dict, int]:
  """The windows of one epoch from `first_window` on; logs every `log_interval` windows like the
  reference, checkpoints every `checkpoint_every` steps, and on SIGTERM checkpoints and stops (the last
  window excepted: the epoch end, which follows at once, checkpoints then)."""
  interval_losses, interval_start = [], time.time()
  progress = tqdm(total=len(windows), initial=first_window, desc=f"epoch {epoch}", leave=False,
                  disable=not (report.enabled and sys.stderr.isatty()))
  for window in range(first_window, len(windows)):
    start, length = windows[window]
    params, opt_state, carry, step_metrics = train_step(state["params"], state["opt_state"], state["carry"],
                                                        state["rng"], step, start, length, train.padded_TxB)
    state = {**state, "params": params, "opt_state": opt_state, "carry": carry}
    if window == first_window:
      jax.block_until_ready(step_metrics)
      report.line(f"| first train step of the epoch, compilation included: {time.time() - interval_start:.1f}s")
    step, batch = step + 1, window + 1
    interval_losses.append(step_metrics["loss"])
    progress.update()
    if batch % config.log_interval == 0 or batch == len(windows):
      loss = float(np.mean(jax.device_get(interval_losses)))
      _stop_if_diverged(loss, f"training loss at epoch {epoch}, batch {batch}", workdir)
      ms_per_batch = (time.time() - interval_start) * 1000 / len(interval_losses)
      report.line(f"| epoch {epoch:3d} | {batch:5d}/{len(windows):5d} batches | lr {lr:.4g} | "
                  f"ms/batch {ms_per_batch:5.2f} | loss {loss:5.2f} | ppl {optim.perplexity(loss):8.2f}")
      report.scalars(step, {"train_loss": loss, "train_ppl": optim.perplexity(loss), "ms_per_batch": ms_per_batch,
                            "lr": lr, "grad_norm": float(step_metrics["grad_norm"])})
      interval_losses, interval_start = [], time.time()
    stopping = stop.reached(step)
    if batch < len(windows) and (stopping or (config.checkpoint_every and step % config.checkpoint_every == 0)):
      # A diverged state is never checkpointed.
      _stop_if_diverged(float(step_metrics["loss"]), f"training loss at epoch {epoch}, batch {batch}", workdir)
      save(state, batch, step)
      if stopping:
        raise Preempted(_preempted_message(workdir, f"epoch {epoch}, batch {batch}/{len(windows)}", step))
  progress.close()
  return state, step


def _zero_carry(model: RNNModel, batch_size: int, mesh: Mesh) -> State:
  """The state at the start of each epoch, its columns on the devices holding their data."""
  return tuple(parallel.put(x, mesh, parallel.CARRY) for x in zero_carry(model.cell, model.nlayers, batch_size,
                                                                          model.nhid))


def _save_latest(workdir: str, meta: dict, epochs_done: int, lr: float, best_val_loss: float, state: dict,
                 window: int, step: int) -> None:
  """`state` and where the loop stands: `window` windows done of the epoch after `epochs_done`."""
  checkpoints.save(workdir, checkpoints.LATEST, step, state,
                   {**meta, "epoch": epochs_done, "window": window, "step": step, "lr": lr,
                    "best_val_loss": best_val_loss})


def _preempted_message(workdir: str, where: str, step: int) -> str:
  return (f"stopped by SIGTERM at {where} (step {step}) with a checkpoint in "
          f"{checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)}; run the same command with --resume to continue")


def _stop_if_diverged(loss: float, what: str, workdir: str) -> None:
  if not math.isfinite(loss):
    raise TrainingDiverged(f"{what} became {loss}; the last good checkpoint in "
                           f"{checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)} is kept; lower "
                           "--config.lr or --config.clip and train again")


def _floor_note(corpus: Corpus, split: str, loss: float) -> str:
  if not corpus.floor:
    return ""
  floor = corpus.floor[split]
  return f" | true-source floor {math.exp(floor):8.2f} (+{100 * (optim.perplexity(loss - floor) - 1):.1f}%)"


def _require_same_data(saved: dict, meta: dict, workdir: str) -> None:
  if saved["vocab"] != meta["vocab"]:
    raise UserError(f"the checkpoint in {workdir} was trained with a different vocabulary "
                    f"({len(saved['vocab']):,} words, this data has {len(meta['vocab']):,}); use the data it was "
                    "trained on")
  if saved["windows"] != meta["windows"]:
    raise UserError(f"the checkpoint in {workdir} was trained on {saved['windows']:,} windows an epoch, this data "
                    f"makes {meta['windows']:,}; use the data it was trained on")
