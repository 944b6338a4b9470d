"""The cuDNN LSTM backend (config.model.rnn_backend='cudnn', lm_jax/models/cudnn_lstm.py) against the scan, in a
worker process: the same parameters through both, the logits of one window (and of a short one, with the state
after it) within 1e-5, then 20 train steps of the reference recipe (clip 0.25, SGD lr 20, the shape's dropout)
from the same state, the losses and the parameters within 1e-4; then each backend's train step timed.

Errors are norm-wise, max|a - b| / max|b|, as in tests/test_fidelity.py. A dry run (no GPU) replaces the kernel
by jax.experimental.rnn's reference (cudnn_lstm.reference_lstm), so everything around it is still checked.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax import steps
from lm_jax.config import reference_config
from lm_jax.data.batching import put_on_device, window_at, window_bounds
from lm_jax.models.rnn_model import RNNModel
from lm_jax.optim import make_optimizer

from benchmarks.common.timing import median_seconds
from benchmarks.step_time.shapes import make_shape, random_stream

TOLERANCES = {"logits": 1e-5, "training": 1e-4}
TRAIN_STEPS = 20


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def run(sizes: list[str], vocab: int, timed_steps: int, dry_run: bool) -> list[dict]:
  """One row per size (the step-time shapes: 'small', 'medium', or 'quick' for a dry run), LSTM at `vocab`."""
  if dry_run:
    from jax.experimental import rnn

    from lm_jax.models import cudnn_lstm
    rnn.lstm = cudnn_lstm.reference_lstm  # no cuDNN here: the kernel's reference in its place
  return [compare(size, vocab, timed_steps) for size in sizes]


def compare(size: str, vocab: int, timed_steps: int) -> dict:
  reference = reference_config().optim
  shape = make_shape("lstm", size, vocab, "float32", reference.lr, reference.clip)
  fields = dict(vocab_size=vocab, cell="lstm", emsize=shape.nhid, nhid=shape.nhid, nlayers=shape.nlayers,
                dropout=shape.dropout, tied=shape.tied)
  models = {"scan": RNNModel(**fields), "cudnn": RNNModel(**fields, rnn_backend="cudnn")}
  split = put_on_device(random_stream(shape, shape.batch, TRAIN_STEPS + 1, seed=0), shape.batch, shape.bptt)
  logits = {name: _logits(model, split.padded_TxB, shape.bptt) for name, model in models.items()}
  trained = {name: _train(model, split, shape.bptt, timed_steps) for name, model in models.items()}
  errors = {"logits": rel_err(logits["cudnn"]["full"], logits["scan"]["full"]),
            "logits_short_window": rel_err(logits["cudnn"]["short"], logits["scan"]["short"]),
            "state_after_short_window": rel_err(logits["cudnn"]["state"], logits["scan"]["state"]),
            "train_losses": rel_err(trained["cudnn"]["losses"], trained["scan"]["losses"]),
            "trained_params": max(rel_err(a, b) for a, b in zip(jax.tree.leaves(trained["cudnn"]["params"]),
                                                                jax.tree.leaves(trained["scan"]["params"])))}
  limits = {"logits": "logits", "logits_short_window": "logits", "state_after_short_window": "logits",
            "train_losses": "training", "trained_params": "training"}
  return {"size": size, "model": models["cudnn"].describe(), "shape": dataclasses.asdict(shape),
          "train_steps_compared": TRAIN_STEPS, "errors": errors, "tolerances": TOLERANCES,
          "passed": all(errors[name] <= TOLERANCES[limits[name]] for name in errors),
          "train_ms": {name: t["train_ms"] for name, t in trained.items()},
          "cudnn_speedup": trained["scan"]["train_ms"] / trained["cudnn"]["train_ms"]}


def _logits(model: RNNModel, padded_TxB: jax.Array, bptt: int) -> dict:
  """The logits of the first window, of a window of half its length (valid steps only) and the state after it."""
  params = model.init_params(0)

  @jax.jit
  def forward(length):
    window = window_at(padded_TxB, 0, length, bptt)
    out = model.features(params, window.inputs_TxB, model.init_carry(padded_TxB.shape[1]), window.valid_T)
    return model.logits(params, out.features_TxBxH), out.carry

  full, _ = forward(bptt)
  short, state = forward(bptt // 2)
  return {"full": full, "short": short[:bptt // 2], "state": jnp.stack(jax.tree.leaves(state))}


def _train(model: RNNModel, split, bptt: int, timed_steps: int) -> dict:
  """TRAIN_STEPS steps from the seed's state, their losses and the parameters after them; then the median time
  of `timed_steps` more."""
  optimizer = make_optimizer(reference_config().optim)
  train_step = steps.make_train_step(model, optimizer, bptt)
  state = steps.TrainState.create(model, optimizer, 0, split.batch_size)
  windows = [steps.WindowAt(*w) for w in window_bounds(split.rows, bptt)]
  losses = []
  for window in windows[:TRAIN_STEPS]:
    state, metrics = train_step(state, window, split.padded_TxB)
    losses.append(metrics["loss"])
  result = {"losses": jax.device_get(losses), "params": jax.device_get(state.params)}

  def one_step():
    nonlocal state
    state = jax.block_until_ready(train_step(state, windows[0], split.padded_TxB)[0])

  result["train_ms"] = 1000 * median_seconds(one_step, timed_steps)
  return result
