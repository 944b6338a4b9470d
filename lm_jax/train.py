"""train_and_evaluate(config, workdir): the reference training recipe around the pure steps.

Per epoch: the state starts at zeros, every window is one compiled `train_step` call, then the
validation split is scored in one compiled scan. The lr rule runs on the host between epochs, the
best model is checkpointed whenever validation improves, and the end scores test with it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from lm_jax import checkpoints, config as config_lib, optim, steps, workdir as workdir_lib
from lm_jax.data.batching import DeviceSplit, put_on_device, window_bounds
from lm_jax.data.sources import Corpus, load_corpus
from lm_jax.errors import UserError
from lm_jax.metrics import MetricsWriter
from lm_jax.models.rnn_model import RNNModel, model_from_config, zero_carry


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


def init_params(model: RNNModel, seed: int, batch_size: int) -> steps.Params:
  tokens_TxB = jnp.zeros((1, batch_size), jnp.int32)
  carry = zero_carry(model.cell, model.nlayers, batch_size, model.nhid)
  return model.init(jax.random.PRNGKey(seed), tokens_TxB, carry)["params"]


@dataclasses.dataclass
class Evaluator:
  """Scores whole splits with one compiled scan over their windows (batch size fixed per split)."""

  model: RNNModel
  bptt: int

  def __post_init__(self):
    self._eval_split = steps.make_eval_split(self.model, self.bptt)

  def mean_nll(self, params: steps.Params, split: DeviceSplit) -> float:
    """Sum of token NLL / tokens scored, the state carried from window to window from zeros."""
    starts_W, lengths_W = np.array(window_bounds(split.rows, self.bptt), np.int32).T
    carry = zero_carry(self.model.cell, self.model.nlayers, split.batch_size, self.model.nhid)
    nll_sums_W = self._eval_split(params, carry, starts_W, lengths_W, split.padded_TxB)
    return float(np.sum(np.asarray(nll_sums_W, np.float64)) / split.num_tokens_scored)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, resume: bool = False,
                       overwrite: bool = False) -> dict[str, float]:
  """Trains per `config`, checkpoints into `workdir`, returns the final metrics."""
  config_lib.validate(config)
  corpus = load_corpus(config.data)  # Bad data fails here, before the workdir is touched.
  resuming = workdir_lib.prepare(workdir, config, resume, overwrite)
  model = model_from_config(config.model, len(corpus.vocab))
  optimizer = optim.make_optimizer(config)
  params = init_params(model, config.seed, config.batch_size)
  opt_state = optimizer.init(params)
  print(f"| corpus: {len(corpus.vocab):,} words; tokens " +
        ", ".join(f"{s} {len(ids):,}" for s, ids in corpus.ids.items()) +
        f" | model: {config.model.cell} {config.model.nlayers}x{config.model.nhid}, "
        f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters | device: {jax.devices()[0].platform}")

  first_epoch, step, lr, best_val_loss = 1, 0, config.lr, math.inf
  if resuming and checkpoints.latest_step(workdir, checkpoints.LATEST) is not None:
    state, meta = checkpoints.restore(workdir, checkpoints.LATEST, {"params": params, "opt_state": opt_state})
    _require_same_vocab(meta, corpus, workdir)
    params, opt_state = state["params"], state["opt_state"]
    first_epoch, step, lr, best_val_loss = meta["epoch"] + 1, meta["step"], meta["lr"], meta["best_val_loss"]
    print(f"| resuming after epoch {meta['epoch']} (lr {lr:g}, best valid loss {best_val_loss:.3f})")

  train = put_on_device(corpus.ids["train"], config.batch_size, config.bptt, "train")
  valid = put_on_device(corpus.ids["valid"], config.eval_batch_size, config.bptt, "valid")
  test = put_on_device(corpus.ids["test"], config.eval_batch_size, config.bptt, "test")
  train_step = steps.make_train_step(model, optimizer, config.bptt, config.loss_reduction == "sum_over_time")
  evaluator = Evaluator(model, config.bptt)
  metrics = MetricsWriter(workdir)
  rng = jax.random.PRNGKey(config.seed + 1)  # dropout stream, folded with the step number
  windows = window_bounds(train.rows, config.bptt)
  meta = {"vocab": list(corpus.vocab.words), "config": config.to_dict()}

  for epoch in range(first_epoch, config.epochs + 1):
    epoch_start = time.time()
    opt_state = optim.with_learning_rate(opt_state, lr)
    carry = zero_carry(model.cell, model.nlayers, config.batch_size, model.nhid)
    params, opt_state, carry, step = _train_epoch(config, train_step, params, opt_state, carry, rng, step,
                                                  windows, train, epoch, lr, metrics, workdir)
    val_loss = evaluator.mean_nll(params, valid)
    _stop_if_diverged(val_loss, f"validation loss after epoch {epoch}", workdir)
    improved = val_loss < best_val_loss
    print("-" * 89)
    print(f"| end of epoch {epoch:3d} | time: {time.time() - epoch_start:5.2f}s | valid loss {val_loss:5.2f} | "
          f"valid ppl {optim.perplexity(val_loss):8.2f}" + _floor_note(corpus, "valid", val_loss))
    print("-" * 89)
    metrics.write(step, {"valid_loss": val_loss, "valid_ppl": optim.perplexity(val_loss), "epoch": epoch, "lr": lr})
    if improved:
      best_val_loss = val_loss
      checkpoints.save(workdir, checkpoints.BEST, epoch, {"params": params}, {**meta, "epoch": epoch, "val_loss": val_loss})
    lr = optim.next_learning_rate(config, lr, epoch, improved)
    checkpoints.save(workdir, checkpoints.LATEST, epoch, {"params": params, "opt_state": opt_state},
                     {**meta, "epoch": epoch, "step": step, "lr": lr, "best_val_loss": best_val_loss})

  best, _ = checkpoints.restore(workdir, checkpoints.BEST, {"params": params})
  results = {"valid_loss": evaluator.mean_nll(best["params"], valid), "test_loss": evaluator.mean_nll(best["params"], test)}
  results.update(valid_ppl=optim.perplexity(results["valid_loss"]), test_ppl=optim.perplexity(results["test_loss"]))
  if corpus.floor:
    results.update(valid_floor_ppl=math.exp(corpus.floor["valid"]), test_floor_ppl=math.exp(corpus.floor["test"]))
  print("=" * 89)
  print(f"| End of training | best model: valid ppl {results['valid_ppl']:8.2f}{_floor_note(corpus, 'valid', results['valid_loss'])}")
  print(f"| End of training | test loss {results['test_loss']:5.2f} | test ppl {results['test_ppl']:8.2f}"
        f"{_floor_note(corpus, 'test', results['test_loss'])}")
  print("=" * 89)
  metrics.write(step, {k: v for k, v in results.items()})
  metrics.close()
  return results


def _train_epoch(config, train_step, params, opt_state, carry, rng, step, windows, train: DeviceSplit,
                 epoch: int, lr: float, metrics: MetricsWriter, workdir: str):
  """One pass over the training windows; logs every `log_interval` windows like the reference."""
  interval_losses, interval_start = [], time.time()
  progress = tqdm(total=len(windows), desc=f"epoch {epoch}", leave=False, disable=not sys.stderr.isatty())
  for batch, (start, length) in enumerate(windows, 1):
    params, opt_state, carry, step_metrics = train_step(params, opt_state, carry, rng, step, start, length,
                                                        train.padded_TxB)
    if batch == 1:
      jax.block_until_ready(step_metrics)
      tqdm.write(f"| first train step of the epoch, compilation included: {time.time() - interval_start:.1f}s")
    step += 1
    interval_losses.append(step_metrics["loss"])
    progress.update()
    if batch % config.log_interval == 0 or batch == len(windows):
      loss = float(np.mean(jax.device_get(interval_losses)))
      _stop_if_diverged(loss, f"training loss at epoch {epoch}, batch {batch}", workdir)
      ms_per_batch = (time.time() - interval_start) * 1000 / len(interval_losses)
      tqdm.write(f"| epoch {epoch:3d} | {batch:5d}/{len(windows):5d} batches | lr {lr:.4g} | "
                 f"ms/batch {ms_per_batch:5.2f} | loss {loss:5.2f} | ppl {optim.perplexity(loss):8.2f}")
      metrics.write(step, {"train_loss": loss, "train_ppl": optim.perplexity(loss), "ms_per_batch": ms_per_batch,
                           "lr": lr, "grad_norm": float(step_metrics["grad_norm"])})
      interval_losses, interval_start = [], time.time()
  progress.close()
  return params, opt_state, carry, step


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


def _require_same_vocab(meta: dict, corpus: Corpus, workdir: str) -> None:
  if tuple(meta["vocab"]) != corpus.vocab.words:
    raise UserError(f"the checkpoint in {workdir} was trained with a different vocabulary "
                    f"({len(meta['vocab']):,} words, this data has {len(corpus.vocab):,}); use the data it was "
                    "trained on")
