"""train_and_evaluate(config, workdir): the reference training recipe around the pure train step.

Per epoch: the state starts at zeros, every window is one compiled `train_step(state, window_at,
data)` call spread over the device mesh, then the validation split is scored in one compiled scan. The
schedule runs on the host between epochs, the best model is checkpointed whenever validation improves,
and the end scores test with it.

Exact resume: the `latest` checkpoint holds the whole TrainState (parameters, optimiser state,
carried state, dropout key, step) and, as metadata, the loop's `Progress` (epochs done, windows done
of the next one, step, lr, best validation loss). It is written every `checkpoint_every` windows, at
each epoch end, and when SIGTERM asks the run to stop; a resumed run replays from there exactly what
the uninterrupted run computes.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import sys
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from lm_jax import checkpoints, config as config_lib, loss, optim, parallel, pretrained, trained, workdir as workdir_lib
from lm_jax.data.articles import shuffled_articles
from lm_jax.data.batching import VARIABLE_BPTT_MARGIN, DeviceSplit, put_on_device, variable_windows, window_bounds
from lm_jax.data.sources import Corpus, load_corpus
from lm_jax.errors import UserError
from lm_jax.evaluate import Evaluator
from lm_jax.metrics import MetricsWriter
from lm_jax.models.registry import model_from_config
from lm_jax.steps import STATE_SPECS, TrainState, WindowAt, make_train_step


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


class Preempted(Exception):
  """SIGTERM stopped the run at a step boundary, after writing the checkpoint to resume from."""


@dataclasses.dataclass
class Progress:
  """Where the loop stands, on the host: the `latest` checkpoint's metadata (beside vocabulary and config)."""

  lr: float                         # of the epoch under way
  epochs_done: int = 0
  window: int = 0                   # windows done of the epoch under way
  step: int = 0                     # train steps taken in all
  best_val_loss: float = math.inf
  # nt_asgd: validation losses before averaging started (after, when fine-tuning), for the nonmono trigger.
  val_history: list[float] = dataclasses.field(default_factory=list)
  converged: bool = False           # fine-tuning stopped by the trigger, as the reference's finetune.py
  train_loss_sum: float = 0.0       # of the windows done of the epoch under way: the epoch's mean train loss

  def as_meta(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_meta(cls, meta: dict) -> Progress:
    # A checkpoint written before a field existed gets the field's default.
    return cls(**{field.name: meta[field.name] for field in dataclasses.fields(cls) if field.name in meta})


class _Report:
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

  def close(self) -> None:
    if self._metrics is not None:
      self._metrics.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
                       overwrite: bool = False, mesh: Mesh | None = None) -> dict[str, float]:
  """Trains per `config` over `mesh` (default: every device of every process), checkpoints into
  `workdir`, returns the final metrics. Raises Preempted, once a checkpoint is written, on SIGTERM."""
  config_lib.validate(config)
  mesh = parallel.data_mesh() if mesh is None else mesh
  parallel.require_divisible(config.batch_size, mesh)
  corpus = load_corpus(config.data, training=True)
  # Bad data fails in these three, before anything is written: a split too short for its batch is found when
  # the loop places it on the devices, a checkpoint of other data when the loop starts from it.
  loop = _Loop(config, workdir, corpus, mesh)
  resuming = workdir_lib.check(workdir, config, resume, overwrite)
  state, progress = loop.start(resuming)
  workdir_lib.claim(workdir, config, overwrite)
  loop.report.open_metrics(workdir, resumed_at=progress.step if resuming else None)
  if config.finetune_from and not resuming:
    loop.save_starting_point(state, progress)
  try:
    with parallel.StopSignal() as stop:
      while progress.epochs_done < config.epochs and not progress.converged:
        first_window, epoch_start = progress.window, time.time()
        state = loop.train_epoch(state, progress, stop)
        state = loop.end_epoch(state, progress, stop, first_window, time.time() - epoch_start)
    return loop.finish(state, progress)
  finally:
    loop.report.close()  # metrics written so far reach the disk, however the run ends


class _Loop:
  """What stays fixed through a run (config, data on the devices, compiled steps, the report), and the
  loop's parts as methods over the changing (TrainState, Progress)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, corpus: Corpus, mesh: Mesh):
    self.config, self.workdir, self.corpus, self.mesh = config, workdir, corpus, mesh
    self.model = model_from_config(config.model, len(corpus.vocab))
    # freeze_embeddings with a tied decoder freezes the decoder's weight too: it is the same matrix.
    self.optimizer = optim.make_optimizer(config.optim,
                                          frozen=[self.model.embedding_param] if config.model.freeze_embeddings else [])
    self.report = _Report()
    # Variable BPTT's windows are cut at a static length beyond bptt: one compiled program for all.
    max_len = config.bptt + VARIABLE_BPTT_MARGIN if config.variable_bptt else config.bptt
    self.train = put_on_device(corpus.ids["train"], config.batch_size, max_len, "train", mesh)
    self.valid = put_on_device(corpus.ids["valid"], config.eval_batch_size, config.bptt, "valid", mesh)
    self.test = put_on_device(corpus.ids["test"], config.test_batch_size, config.bptt, "test", mesh)
    # Saved with every checkpoint: a checkpoint is self-contained, and a resume checks it fits this data.
    self.meta = {"vocab": list(corpus.vocab.words), "config": config.to_dict(), "train_rows": self.train.rows}
    self.train_step = make_train_step(self.model, self.optimizer, max_len, reduction=config.loss_reduction,
                                      terms=loss.regularisers(config), mesh=mesh)
    self.evaluator = Evaluator(self.model, config.bptt, mesh)

  def start(self, resuming: bool) -> tuple[TrainState, Progress]:
    """A fresh state from the seed (with any pretrained embeddings), or the `latest` checkpoint's when resuming a
    run that wrote one. Only reads."""
    restoring = resuming and checkpoints.latest_step(self.workdir, checkpoints.LATEST) is not None
    params = self.model.init_params(self.config.seed)
    self.report.line(
        f"| corpus: {len(self.corpus.vocab):,} words; tokens " +
        ", ".join(f"{s} {len(ids):,}" for s, ids in self.corpus.ids.items()) +
        f" | model: {self.model.describe()}, {sum(x.size for x in jax.tree.leaves(params)):,} parameters"
        f" | devices: {self.mesh.size} {self.mesh.devices.flat[0].platform} in {jax.process_count()} process(es)")
    if self.config.model.pretrained_embeddings and not restoring:  # a checkpoint holds them already
      path = self.config.model.pretrained_embeddings
      params, matched = pretrained.load_into(self.model, params, self.corpus.vocab.words, path)
      self.report.line(matched.coverage(len(self.corpus.vocab), path))
    fresh = TrainState.create(self.model, self.optimizer, self.config.seed, self.config.batch_size, params)
    state = parallel.put_tree(fresh, self.mesh, STATE_SPECS)
    progress = Progress(lr=optim.initial_learning_rate(self.config.optim))
    if self.config.finetune_from:
      state, progress = self._finetune_start(state, progress)
    if restoring:
      restored, saved = checkpoints.restore(self.workdir, checkpoints.LATEST, state._asdict())
      self._require_same_data(saved)
      state, progress = TrainState(**restored), Progress.from_meta(saved)
      self.report.line(f"| resuming after epoch {progress.epochs_done}" +
                       (f", window {progress.window}/{len(self.epoch_windows(progress.epochs_done + 1))}"
                        if progress.window else "") +
                       f" (step {progress.step}, lr {progress.lr:g}, best valid loss {progress.best_val_loss:.3f})")
    return state, progress

  def _finetune_start(self, state: TrainState, progress: Progress) -> tuple[TrainState, Progress]:
    """The reference's finetune.py: the best parameters of another run, averaging from the first step, and
    that model's validation loss as the best so far."""
    source = trained.load(self.config.finetune_from)
    if source.model != self.model:
      raise UserError(f"--config.finetune_from={self.config.finetune_from} holds a {source.model.describe()}, this "
                      f"config a {self.model.describe()}; fine-tune with the config that run was trained with")
    params = parallel.put_tree(source.params, self.mesh, parallel.REPLICATED)
    state = state._replace(params=params, opt_state=optim.start_averaging(state.opt_state))
    progress.best_val_loss = self.evaluator.mean_nll(params, self.valid)
    self.report.line(f"| fine-tuning {self.config.finetune_from}'s best model (valid ppl "
                     f"{optim.perplexity(progress.best_val_loss):.2f}) with averaged SGD from the first step")
    return state, progress

  def save_starting_point(self, state: TrainState, progress: Progress) -> None:
    """Fine-tuning's `best` until an epoch beats it: the model it started from (the reference's finetune.py
    overwrites that model's own file only on improvement, and tests whatever the file holds at the end)."""
    self._save(checkpoints.BEST, 0, {"params": state.params},
               {**self.meta, "epoch": 0, "val_loss": progress.best_val_loss})

  def epoch_windows(self, epoch: int) -> list[WindowAt]:
    """The epoch's windows: fixed bptt, or drawn (variable BPTT) from the seed and the epoch number, so
    that a resumed run draws the same ones."""
    if self.config.variable_bptt:
      rng = np.random.default_rng([self.config.seed, epoch])
      return [WindowAt(*w) for w in variable_windows(self.train.rows, self.config.bptt, rng)]
    return [WindowAt(*w) for w in window_bounds(self.train.rows, self.config.bptt)]

  def epoch_train_split(self, epoch: int) -> DeviceSplit:
    """The epoch's training split: the corpus order, or (shuffle_articles) whole articles in an order drawn from
    the seed and the epoch number, so that a resumed run sees the same. Same tokens, so the same rows: the
    windows and the compiled step do not change."""
    if not self.config.data.shuffle_articles:
      return self.train
    rng = np.random.default_rng([self.config.seed, epoch])
    ids = shuffled_articles(self.corpus.ids["train"], self.corpus.train_articles, rng)
    return put_on_device(ids, self.config.batch_size, self.train.max_len, "train", self.mesh)

  def train_epoch(self, state: TrainState, progress: Progress, stop: parallel.StopSignal,
                  until_window: int | None = None) -> TrainState:
    """The epoch's windows from `progress.window` on. Logs interval means every `log_interval` windows like
    the reference, checkpoints every `checkpoint_every` steps, and on SIGTERM checkpoints and stops (the
    last window excepted: the epoch end, which follows at once, checkpoints then). `until_window` returns
    after that many windows of the epoch instead of all (benchmarks/jax_loop.py times the loop so)."""
    epoch, first_window = progress.epochs_done + 1, progress.window
    windows, train = self.epoch_windows(epoch), self.epoch_train_split(epoch)
    if first_window == 0:
      state = state._replace(carry=parallel.put_tree(self.model.init_carry(self.config.batch_size), self.mesh,
                                                     parallel.CARRY))
    # An array on the mesh, like the one the step hands back: one compiled program for every epoch.
    lr_on_mesh = parallel.put(np.float32(progress.lr), self.mesh, parallel.REPLICATED)
    state = state._replace(opt_state=optim.with_learning_rate(state.opt_state, lr_on_mesh))
    interval, interval_start = [], time.time()
    # progress.train_loss_sum adds the losses one window at a time, in order, so that a resumed (or continued)
    # epoch sums them as the uninterrupted one does: those before first_window (from the checkpoint or the
    # last call), then each interval as it is logged, and at a checkpoint or return those not logged yet.
    loss_sum = progress.train_loss_sum
    bar = tqdm(total=len(windows), initial=first_window, desc=f"epoch {epoch}", leave=False,
               disable=not (self.report.enabled and sys.stderr.isatty()))
    for window in range(first_window, len(windows) if until_window is None else until_window):
      state, step_metrics = self.train_step(state, windows[window], train.padded_TxB)
      if window == first_window:
        jax.block_until_ready(step_metrics)
        self.report.line(f"| first train step of the epoch, compilation included: {time.time() - interval_start:.1f}s")
      progress.step, progress.window = progress.step + 1, window + 1
      interval.append(step_metrics)
      bar.update()
      if progress.window % self.config.log_interval == 0 or progress.window == len(windows):
        logged = jax.device_get(interval)
        loss_sum = _add_losses(loss_sum, logged)
        self._log_interval(logged, time.time() - interval_start, progress, epoch, len(windows))
        interval, interval_start = [], time.time()
      stopping = stop.reached(progress.step)
      every = self.config.checkpoint_every
      if progress.window < len(windows) and (stopping or (every and progress.step % every == 0)):
        # A diverged state is never checkpointed.
        self._stop_if_diverged(float(step_metrics["loss"]), f"training loss at epoch {epoch}, batch {progress.window}")
        progress.train_loss_sum = _add_losses(loss_sum, jax.device_get(interval))  # the windows not logged yet too
        self._save_latest(state, progress)
        if stopping:
          raise Preempted(self._preempted_message(f"epoch {epoch}, batch {progress.window}/{len(windows)}",
                                                  progress.step))
    bar.close()
    progress.train_loss_sum = _add_losses(loss_sum, jax.device_get(interval))  # until_window may leave some unlogged
    return state

  def _log_interval(self, interval: list[dict[str, np.ndarray]], seconds: float, progress: Progress,
                    epoch: int, windows: int) -> None:
    """One reference-style line and one metrics record; every value is a mean over the interval's windows:
    train_loss of their mean token NLL, grad_norm of their global gradient norm before the clip."""
    loss = float(np.mean([m["loss"] for m in interval]))
    self._stop_if_diverged(loss, f"training loss at epoch {epoch}, batch {progress.window}")
    ms_per_batch = seconds * 1000 / len(interval)
    self.report.line(f"| epoch {epoch:3d} | {progress.window:5d}/{windows:5d} batches | "
                     f"lr {progress.lr:.4g} | ms/batch {ms_per_batch:5.2f} | loss {loss:5.2f} | "
                     f"ppl {optim.perplexity(loss):8.2f}")
    self.report.scalars(progress.step, {"train_loss": loss, "train_ppl": optim.perplexity(loss),
                                        "ms_per_batch": ms_per_batch, "lr": progress.lr,
                                        "grad_norm": float(np.mean([m["grad_norm"] for m in interval]))})

  def end_epoch(self, state: TrainState, progress: Progress, stop: parallel.StopSignal, first_window: int,
                seconds: float) -> TrainState:
    """Validation (of the averaged iterates once nt_asgd averages), the epoch's metrics record, the best
    checkpoint, the nt_asgd switch, the next lr, and the epoch's `latest` checkpoint. This process trained
    the epoch's windows from `first_window` on in `seconds`."""
    epoch = progress.epochs_done + 1
    windows = self.epoch_windows(epoch)
    train_loss = progress.train_loss_sum / len(windows)  # the mean of every window's mean token NLL
    tokens = sum(int(w.length) for w in windows[first_window:]) * self.config.batch_size
    averaging = optim.is_averaging(state.opt_state)
    params = optim.evaluation_params(state.opt_state, state.params)
    val_loss = self.evaluator.mean_nll(params, self.valid)
    self._stop_if_diverged(val_loss, f"validation loss after epoch {epoch}")
    improved = val_loss < progress.best_val_loss
    self.report.line("-" * 89)
    self.report.line(f"| end of epoch {epoch:3d} | time: {seconds:5.2f}s | valid loss {val_loss:5.2f} | "
                     f"valid ppl {optim.perplexity(val_loss):8.2f}" + self._floor_note("valid", val_loss))
    self.report.line("-" * 89)
    self.report.scalars(progress.step, {
        "valid_loss": val_loss, "valid_ppl": optim.perplexity(val_loss), "epoch": epoch, "lr": progress.lr,
        "epoch_train_loss": train_loss, "epoch_train_ppl": optim.perplexity(train_loss),
        "epoch_seconds": seconds, "tokens_per_second": tokens / seconds,
        "num_params": sum(x.size for x in jax.tree.leaves(state.params))})
    if improved:
      progress.best_val_loss = val_loss
      self._save(checkpoints.BEST, epoch, {"params": params}, {**self.meta, "epoch": epoch, "val_loss": val_loss})
    state = self._nt_asgd(state, progress, val_loss, averaging)
    if not averaging:  # as the reference: once averaging, the lr stays
      progress.lr = optim.next_learning_rate(self.config.optim, progress.lr, epoch, improved)
    progress.epochs_done, progress.window, progress.train_loss_sum = epoch, 0, 0.0
    self._save_latest(state, progress)
    if stop.requested:
      raise Preempted(self._preempted_message(f"the end of epoch {epoch}", progress.step))
    return state

  def _nt_asgd(self, state: TrainState, progress: Progress, val_loss: float, averaging: bool) -> TrainState:
    """AWD-LSTM's trigger: start averaging (at the initial lr, as the reference's new ASGD optimiser) when
    validation is worse than the best of all but the last `nonmono`; when fine-tuning, stop then."""
    if self.config.optim.name != "nt_asgd" or (averaging and not self.config.finetune_from):
      return state
    if optim.should_start_averaging(self.config.optim, progress.val_history, val_loss):
      if averaging:
        progress.converged = True
        self.report.line("| fine-tuning done: validation stopped improving")
      else:
        state = state._replace(opt_state=optim.start_averaging(state.opt_state))
        progress.lr = self.config.optim.lr
        self.report.line(f"| switching to averaged SGD (lr {progress.lr:g})")
    progress.val_history.append(val_loss)
    return state

  def finish(self, state: TrainState, progress: Progress) -> dict[str, float]:
    """Valid and test scores of the best model, reported and returned."""
    best, _ = checkpoints.restore(self.workdir, checkpoints.BEST, {"params": state.params})
    results = {"valid_loss": self.evaluator.mean_nll(best["params"], self.valid),
               "test_loss": self.evaluator.mean_nll(best["params"], self.test)}
    results.update(valid_ppl=optim.perplexity(results["valid_loss"]), test_ppl=optim.perplexity(results["test_loss"]))
    if self.corpus.floor:
      results.update(valid_floor_ppl=math.exp(self.corpus.floor["valid"]),
                     test_floor_ppl=math.exp(self.corpus.floor["test"]))
    self.report.line("=" * 89)
    self.report.line(f"| End of training | best model: valid ppl {results['valid_ppl']:8.2f}"
                     f"{self._floor_note('valid', results['valid_loss'])}")
    self.report.line(f"| End of training | test loss {results['test_loss']:5.2f} | test ppl {results['test_ppl']:8.2f}"
                     f"{self._floor_note('test', results['test_loss'])}")
    self.report.line("=" * 89)
    self.report.scalars(progress.step, results)
    return results

  def _save_latest(self, state: TrainState, progress: Progress) -> None:
    self._save(checkpoints.LATEST, progress.step, state._asdict(), {**self.meta, **progress.as_meta()})

  def _save(self, kind: str, step: int, state: dict, meta: dict) -> None:
    """checkpoints.save, with a full disk as one line: orbax commits a step only once it is whole, so the
    checkpoint before it is still there to resume from."""
    try:
      checkpoints.save(self.workdir, kind, step, state, meta)
    except Exception as e:
      if not _disk_full(e):
        raise
      raise UserError(f"no space left on the device while writing the {kind} checkpoint (step {step}) in "
                      f"{checkpoints.checkpoint_dir(self.workdir, kind)}; the one before it is kept: free space, "
                      "then run the same command with --resume") from None

  def _preempted_message(self, where: str, step: int) -> str:
    return (f"stopped by SIGTERM at {where} (step {step}) with a checkpoint in "
            f"{checkpoints.checkpoint_dir(self.workdir, checkpoints.LATEST)}; run the same command with --resume "
            "to continue")

  def _stop_if_diverged(self, loss: float, what: str) -> None:
    if not math.isfinite(loss):
      raise TrainingDiverged(f"{what} became {loss}; the last good checkpoint in "
                             f"{checkpoints.checkpoint_dir(self.workdir, checkpoints.LATEST)} is kept; lower "
                             "--config.optim.lr or --config.optim.clip and train again")

  def _floor_note(self, split: str, loss: float) -> str:
    if not self.corpus.floor:
      return ""
    floor = self.corpus.floor[split]
    return f" | true-source floor {math.exp(floor):8.2f} (+{100 * (optim.perplexity(loss - floor) - 1):.1f}%)"

  def _require_same_data(self, saved: dict) -> None:
    if saved["vocab"] != self.meta["vocab"]:
      raise UserError(f"the checkpoint in {self.workdir} was trained with a different vocabulary "
                      f"({len(saved['vocab']):,} words, this data has {len(self.meta['vocab']):,}); use the data it "
                      "was trained on")
    if saved["train_rows"] != self.meta["train_rows"]:
      raise UserError(f"the checkpoint in {self.workdir} was trained on {saved['train_rows']:,} rows of training "
                      f"data, this data makes {self.meta['train_rows']:,}; use the data it was trained on")


def _add_losses(total: float, step_metrics: list[dict[str, np.ndarray]]) -> float:
  for metrics in step_metrics:
    total += float(metrics["loss"])
  return total


def _disk_full(error: BaseException | None) -> bool:
  """Whether `error` or one it came from is ENOSPC (orbax re-raises its writer threads' errors, sometimes wrapped)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    error = error.__cause__ or error.__context__
  return False
