"""A classification run: what stays fixed through it (`Run`: one fold's encoded splits, the model, the optimiser
and its policy, the compiled step), its start (fresh from the seed, with any pretrained vectors, or the `latest`
checkpoint's state), each epoch's batches, the scores of a split, and its end (the best model on test).
lm_jax/classify/train.py holds the epoch; lm_jax/runner.py drives both."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm_jax import checkpoints, finetuning, optim, runner
from lm_jax.classify import metrics as metrics_lib, steps
from lm_jax.classify.data.batching import Batch, bucket_lengths, bucketed_batches
from lm_jax.classify.data.corpus import LabelledCorpus
from lm_jax.classify.data.prepare import EncodedFold, EncodedSplit
from lm_jax.classify.data.splits import Fold
from lm_jax.classify.models.interface import Classifier
from lm_jax.classify.models.registry import family, model_from_config
from lm_jax.errors import UserError
from lm_jax.runner import Progress
from lm_jax.steps import TrainState


@dataclasses.dataclass(frozen=True)
class Run:
  """What stays fixed through a run."""

  config: ml_collections.ConfigDict
  workdir: str
  classes: tuple[str, ...]
  data: EncodedFold
  model: Classifier
  optimizer: optax.GradientTransformation
  policy: optim.EpochPolicy
  meta: dict  # saved with every checkpoint: vocabulary, classes, config, fold; a resume checks it fits this data
  train_step: Callable[[TrainState, Batch, float], tuple[TrainState, steps.Metrics]]
  report: runner.Report

  @property
  def buckets(self) -> tuple[int, ...]:
    return bucket_lengths(self.config.data.max_len)


def setup_run(config: ml_collections.ConfigDict, workdir: str, *, corpus: LabelledCorpus, fold: Fold) -> Run:
  """`fold` of `corpus` encoded (the vocabulary from its training split), the model, the optimiser, the compiled
  step. Writes nothing."""
  data = family(config.model).encode_fold(config.model, fold, config.data)
  model = model_from_config(config.model, len(data.vocab), len(corpus.classes))
  groups = model.layer_groups()
  finetuning.validate_unfreezing(config.optim, config.epochs, len(groups))
  optimizer = optim.make_optimizer(config.optim, frozen=model.frozen_params(), groups=groups)
  report = runner.Report()
  cut = {name: split.num_cut for name, split in data.splits.items() if split.num_cut}
  if cut:
    report.line(f"| cut to config.data.max_len={config.data.max_len} tokens: " +
                ", ".join(f"{n:,} of {len(data.splits[s].ids):,} {s} examples" for s, n in cut.items()))
  known = data.known_fraction()
  if known < 1.0:
    report.line(f"| vocabulary: {100 * known:.1f}% of the training split's tokens are in it, the rest <unk>")
  meta = {"vocab": list(data.vocab.words), "classes": list(corpus.classes), "config": config.to_dict(),
          "fold": fold.name, "bayes_accuracy": (corpus.bayes_accuracy or {}).get("test")}
  return Run(config, workdir, corpus.classes, data, model, optimizer, optim.policy(config.optim), meta,
             steps.make_train_step(model, optimizer), report)


def start(run: Run, resuming: bool) -> tuple[TrainState, Progress]:
  """A fresh state from the seed (with any pretrained vectors or weights), or the `latest` checkpoint's when resuming
  a run that wrote one. Only reads."""
  config = run.config
  restoring = resuming and checkpoints.latest_step(run.workdir, checkpoints.LATEST) is not None
  params = run.model.init_params(config.seed)
  sizes = ", ".join(f"{name} {len(split.ids):,}" for name, split in run.data.splits.items())
  run.report.line(f"| {run.data.name}: {len(run.classes)} classes, {len(run.data.vocab):,} words; examples {sizes} | "
                  f"model: {run.model.describe()}, {sum(x.size for x in jax.tree.leaves(params)):,} parameters")
  if not restoring:  # a checkpoint holds them already
    params, note = run.model.initial_params(params, run.data.vocab.words, config.model)
    if note:
      run.report.line(note)
  state = TrainState(params, run.optimizer.init(params), steps.epoch_sums(), jax.random.PRNGKey(config.seed + 1),
                     jnp.int32(0))
  if not restoring:
    return state, Progress(lr=optim.initial_learning_rate(config.optim))
  restored, saved = checkpoints.restore(run.workdir, checkpoints.LATEST, state._asdict())
  if (saved["vocab"], saved["classes"]) != (run.meta["vocab"], run.meta["classes"]):
    raise UserError(f"the checkpoint in {run.workdir} was trained on other data ({len(saved['vocab']):,} words, "
                    f"classes {', '.join(saved['classes'])}); use the data it was trained on")
  progress = Progress.from_meta(saved)
  run.report.line(f"| resuming after epoch {progress.epochs_done}, batch {progress.batch} (step {progress.step})")
  return TrainState(**restored), progress


def begin(run: Run, state: TrainState, progress: Progress, resuming: bool) -> None:
  """Nothing to do once the workdir is claimed."""


def epoch_batches(run: Run, epoch: int) -> list[Batch]:
  """The epoch's training batches, shuffled from the seed and the epoch number: a resumed run draws the same."""
  split = run.data.splits["train"]
  rng = np.random.default_rng([run.config.seed, epoch])
  return list(bucketed_batches(split.ids, split.labels_N, run.config.batch_size, run.buckets, rng))


def split_scores(run: Run, params, split: EncodedSplit) -> metrics_lib.Scores:
  batches = list(bucketed_batches(split.ids, split.labels_N, run.config.eval_batch_size, run.buckets))
  return metrics_lib.scores(steps.probabilities(run.model, params, batches, len(split.ids)), split.labels_N)


def save_latest(run: Run, state: TrainState, progress: Progress) -> None:
  runner.save(run.workdir, checkpoints.LATEST, progress.step, state._asdict(), {**run.meta, **progress.as_meta()})


def finish(run: Run, state: TrainState, progress: Progress) -> dict[str, float]:
  """Dev and test scores of the best model (on dev accuracy), reported and returned."""
  best, _ = checkpoints.restore(run.workdir, checkpoints.BEST, {"params": state.params})
  dev, test = (split_scores(run, best["params"], run.data.splits[name]) for name in ("dev", "test"))
  results = {"dev_accuracy": dev.accuracy, "test_accuracy": test.accuracy, "test_macro_f1": test.macro_f1,
             "test_loss": test.nll}
  bayes = run.meta["bayes_accuracy"]
  if bayes is not None:
    results["test_bayes_accuracy"] = bayes
  note = "" if bayes is None else f" | Bayes accuracy {bayes:.4f} (the best any model can expect)"
  run.report.line("=" * 89)
  run.report.line(f"| End of training ({run.data.name}) | best model: dev accuracy {dev.accuracy:.4f} | test accuracy "
                  f"{test.accuracy:.4f} | test macro-F1 {test.macro_f1:.4f}{note}")
  run.report.line("=" * 89)
  run.report.scalars(progress.step, results)
  return results
