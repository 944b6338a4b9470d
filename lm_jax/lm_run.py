"""A language-modelling run: what stays fixed through it (`Run`: the data on the devices, the model, the
optimiser, the compiled step, the evaluator), its start (fresh from the seed, fine-tuning's starting model, or
the `latest` checkpoint's state), its epochs' windows, and its end (the best model scored on valid and test).
lm_jax/train.py holds the epoch; lm_jax/runner.py drives both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from lm_jax import checkpoints, finetuning, loss, optim, parallel, pretrained, runner, trained, vocab_transfer
from lm_jax.data.articles import shuffled_articles
from lm_jax.data.batching import (VARIABLE_BPTT_MARGIN, DeviceSplit, put_on_device, variable_windows,
                                  window_bounds)
from lm_jax.data.sources import Corpus, load_corpus
from lm_jax.errors import UserError
from lm_jax.evaluate import Evaluator
from lm_jax.models.interface import LanguageModel
from lm_jax.models.registry import model_from_config
from lm_jax.runner import Progress
from lm_jax.steps import STATE_SPECS, TrainState, WindowAt, make_train_step


@dataclasses.dataclass(frozen=True)
class Run:
  """What stays fixed through a run."""

  config: ml_collections.ConfigDict
  workdir: str
  corpus: Corpus
  mesh: Mesh
  model: LanguageModel
  optimizer: optax.GradientTransformation
  policy: optim.EpochPolicy
  train: DeviceSplit
  valid: DeviceSplit
  test: DeviceSplit
  meta: dict  # saved with every checkpoint: it is self-contained, and a resume checks it fits this data
  train_step: Callable
  evaluator: Evaluator
  report: runner.Report


def setup_run(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh | None = None) -> Run:
  """The data on the devices, the model, the optimiser, the compiled step and the evaluator. Writes nothing; a
  split too short for its batch fails here."""
  mesh = parallel.data_mesh() if mesh is None else mesh
  parallel.require_divisible(config.batch_size, mesh)
  corpus = load_corpus(config.data, training=True)
  model = model_from_config(config.model, len(corpus.vocab))
  # freeze_embeddings with a tied decoder freezes the decoder's weight too: it is the same matrix.
  frozen = [model.embedding_param] if config.model.freeze_embeddings else []
  finetuning.validate_unfreezing(config.optim, config.epochs, len(layer_groups(model)))
  optimizer = optim.make_optimizer(config.optim, frozen=frozen, groups=layer_groups(model))
  # Variable BPTT's windows are cut at a static length beyond bptt, and run at their length in buckets.
  max_len = config.bptt + VARIABLE_BPTT_MARGIN if config.variable_bptt else config.bptt
  length_bucket = config.bptt_bucket if config.variable_bptt else 0
  train = put_on_device(corpus.ids["train"], config.batch_size, max_len, "train", mesh)
  return Run(config, workdir, corpus, mesh, model, optimizer, optim.policy(config.optim), train,
             valid=put_on_device(corpus.ids["valid"], config.eval_batch_size, config.bptt, "valid", mesh),
             test=put_on_device(corpus.ids["test"], config.test_batch_size, config.bptt, "test", mesh),
             meta={"vocab": list(corpus.vocab.words), "config": config.to_dict(), "train_rows": train.rows},
             train_step=make_train_step(model, optimizer, max_len, reduction=config.loss_reduction,
                                        terms=loss.regularisers(config), mesh=mesh,
                                        length_bucket=length_bucket),
             evaluator=Evaluator(model, config.bptt, mesh), report=runner.Report())


def start(run: Run, resuming: bool) -> tuple[TrainState, Progress]:
  """A fresh state from the seed (with any pretrained embeddings, or fine-tuning's starting model), or the
  `latest` checkpoint's when resuming a run that wrote one. Only reads."""
  config = run.config
  restoring = resuming and checkpoints.latest_step(run.workdir, checkpoints.LATEST) is not None
  params = run.model.init_params(config.seed)
  run.report.line(
      f"| corpus: {len(run.corpus.vocab):,} words; tokens " +
      ", ".join(f"{s} {len(ids):,}" for s, ids in run.corpus.ids.items()) +
      f" | model: {run.model.describe()}, {sum(x.size for x in jax.tree.leaves(params)):,} parameters"
      f" | devices: {run.mesh.size} {run.mesh.devices.flat[0].platform} in {jax.process_count()} process(es)")
  if config.model.pretrained_embeddings and not restoring:  # a checkpoint holds them already
    path = config.model.pretrained_embeddings
    params, matched = pretrained.load_into(run.model, params, run.corpus.vocab.words, path)
    run.report.line(matched.coverage(len(run.corpus.vocab), path))
  fresh = TrainState.create(run.model, run.optimizer, config.seed, config.batch_size, params)
  state = parallel.put_tree(fresh, run.mesh, STATE_SPECS)
  progress = Progress(lr=optim.initial_learning_rate(config.optim))
  if config.finetune_from:
    state, progress = _finetune_start(run, state, progress)
  if not restoring:
    return state, progress
  restored, saved = checkpoints.restore(run.workdir, checkpoints.LATEST, state._asdict())
  _require_same_data(run, saved)
  state, progress = TrainState(**restored), Progress.from_meta(saved)
  run.report.line(f"| resuming after epoch {progress.epochs_done}" +
                  (f", window {progress.batch}/{len(epoch_windows(run, progress.epochs_done + 1))}"
                   if progress.batch else "") +
                  f" (step {progress.step}, lr {progress.lr:g}, best valid loss {progress.best_val_loss:.3f})")
  return state, progress


def _finetune_start(run: Run, state: TrainState, progress: Progress) -> tuple[TrainState, Progress]:
  """The reference's finetune.py: the best parameters of another run, the optimiser's fine-tuning start (NT-ASGD:
  averaging from the first step), and that model's validation loss as the best so far. A corpus with another
  vocabulary (ULMFiT's target text) gets that run's rows of the words it knows, the mean row for new words."""
  source = trained.load(run.config.finetune_from)
  if dataclasses.replace(source.model, vocab_size=run.model.vocab_size) != run.model:
    raise UserError(f"--config.finetune_from={run.config.finetune_from} holds a {source.model.describe()}, this "
                    f"config a {run.model.describe()}; fine-tune with the config that run was trained with")
  params = source.params
  if source.vocab != run.corpus.vocab:
    params, known = vocab_transfer.transfer(source.model, params, source.vocab, run.corpus.vocab)
    run.report.line(f"| vocabulary: {known:,} of this corpus's {len(run.corpus.vocab):,} words are in "
                    f"{run.config.finetune_from}'s; the other {len(run.corpus.vocab) - known:,} start at its mean row")
  params = parallel.put_tree(params, run.mesh, parallel.REPLICATED)
  state = state._replace(params=params, opt_state=run.policy.start_finetuning(state.opt_state))
  best = run.evaluator.mean_nll(params, run.valid)
  run.report.line(f"| fine-tuning {run.config.finetune_from}'s best model (valid ppl {optim.perplexity(best):.2f})")
  return state, dataclasses.replace(progress, best_val_loss=best)


def begin(run: Run, state: TrainState, progress: Progress, resuming: bool) -> None:
  """Fine-tuning's `best` until an epoch beats it: the model it started from (the reference's finetune.py
  overwrites that model's own file only on improvement, and tests whatever the file holds at the end)."""
  if run.config.finetune_from and not resuming:
    runner.save(run.workdir, checkpoints.BEST, 0, {"params": state.params},
                {**run.meta, "epoch": 0, "val_loss": progress.best_val_loss})


def epoch_windows(run: Run, epoch: int) -> list[WindowAt]:
  """The epoch's windows: fixed bptt, or drawn (variable BPTT) from the seed and the epoch number, so that a
  resumed run draws the same ones; each with its lr factor (variable BPTT's, times STLR's)."""
  config = run.config
  scales = finetuning.epoch_lr_scales(config.optim, epoch, config.epochs, len(layer_groups(run.model)),
                                      lambda e: len(_windows(run, e)))
  return [w._replace(lr_scale=w.lr_scale * float(s)) for w, s in zip(_windows(run, epoch), scales)]


def _windows(run: Run, epoch: int) -> list[WindowAt]:
  if run.config.variable_bptt:
    rng = np.random.default_rng([run.config.seed, epoch])
    return [WindowAt(*w) for w in variable_windows(run.train.rows, run.config.bptt, rng)]
  return [WindowAt(*w) for w in window_bounds(run.train.rows, run.config.bptt)]


@functools.cache
def layer_groups(model: LanguageModel) -> tuple[tuple[str, ...], ...]:
  """The model's layer groups for the fine-tuning recipe (lm_jax/finetuning.py), bottom first."""
  return finetuning.lm_layer_groups(list(jax.eval_shape(model.init_params, 0)))


def epoch_train_split(run: Run, epoch: int) -> DeviceSplit:
  """The epoch's training split: the corpus order, or (shuffle_articles) whole articles in an order drawn from the
  seed and the epoch number, so that a resumed run sees the same. Same tokens, so the same rows: the windows and
  the compiled step do not change."""
  if not run.config.data.shuffle_articles:
    return run.train
  rng = np.random.default_rng([run.config.seed, epoch])
  ids = shuffled_articles(run.corpus.ids["train"], run.corpus.train_articles, rng)
  return put_on_device(ids, run.config.batch_size, run.train.max_len, "train", run.mesh)


def finish(run: Run, state: TrainState, progress: Progress) -> dict[str, float]:
  """Valid and test scores of the best model, reported and returned."""
  best, _ = checkpoints.restore(run.workdir, checkpoints.BEST, {"params": state.params})
  results = {"valid_loss": run.evaluator.mean_nll(best["params"], run.valid),
             "test_loss": run.evaluator.mean_nll(best["params"], run.test)}
  results.update(valid_ppl=optim.perplexity(results["valid_loss"]), test_ppl=optim.perplexity(results["test_loss"]))
  if run.corpus.floor:
    floor = run.corpus.floor
    results.update(valid_floor_ppl=math.exp(floor["valid"]), test_floor_ppl=math.exp(floor["test"]))
  run.report.line("=" * 89)
  run.report.line(f"| End of training | best model: valid ppl {results['valid_ppl']:8.2f}"
                  f"{floor_note(run, 'valid', results['valid_loss'])}")
  run.report.line(f"| End of training | test loss {results['test_loss']:5.2f} | test ppl {results['test_ppl']:8.2f}"
                  f"{floor_note(run, 'test', results['test_loss'])}")
  run.report.line("=" * 89)
  run.report.scalars(progress.step, results)
  return results


def save_latest(run: Run, state: TrainState, progress: Progress) -> None:
  runner.save(run.workdir, checkpoints.LATEST, progress.step, state._asdict(), {**run.meta, **progress.as_meta()})


def floor_note(run: Run, split: str, mean_nll: float) -> str:
  if not run.corpus.floor:
    return ""
  floor = run.corpus.floor[split]
  return f" | true-source floor {math.exp(floor):8.2f} (+{100 * (optim.perplexity(mean_nll - floor) - 1):.1f}%)"


def _require_same_data(run: Run, saved: dict) -> None:
  if saved["vocab"] != run.meta["vocab"]:
    raise UserError(f"the checkpoint in {run.workdir} was trained with a different vocabulary "
                    f"({len(saved['vocab']):,} words, this data has {len(run.meta['vocab']):,}); use the data it "
                    "was trained on")
  if saved["train_rows"] != run.meta["train_rows"]:
    raise UserError(f"the checkpoint in {run.workdir} was trained on {saved['train_rows']:,} rows of training "
                    f"data, this data makes {run.meta['train_rows']:,}; use the data it was trained on")
