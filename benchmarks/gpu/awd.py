"""The AWD-LSTM config's train step (configs/awd_ptb.py: 3 layers 1150/1150/400 tied, batch 20, bptt 70; locked,
embedding and weight dropout, AR and TAR, SGD with weight decay before NT-ASGD's switch, clip 0.25), lm_jax
against torch_reference/awd_lstm.py (salesforce/awd-lstm-lm's model and train step), one worker process each.

Both draw fresh dropout masks every window, as the references do; windows have the fixed length bptt (the
variable BPTT of training draws lengths around it), on random tokens of PTB's vocabulary. Each side's module
imports are inside its function: a worker imports only the framework it measures.
"""

from __future__ import annotations

import numpy as np

VOCAB = 10_000  # PTB's
WINDOWS = 10    # distinct training windows, cycled
DRY_RUN = {"model": {"emsize": 16, "nhid": 24}, "batch_size": 4, "bptt": 8}  # and V 500


def config(dry_run: bool) -> dict:
  """configs/awd_ptb.py as a dict with fixed-length windows; a dry run's sizes cut."""
  from configs import awd_ptb

  c = awd_ptb.get_config()
  c.variable_bptt = False
  if dry_run:
    c.model.update(DRY_RUN["model"])
    c.update(batch_size=DRY_RUN["batch_size"], bptt=DRY_RUN["bptt"])
  return c.to_dict()


def stream(vocab: int, batch: int, bptt: int) -> np.ndarray:
  """Random ids filling WINDOWS whole windows once batchified."""
  return np.random.default_rng(0).integers(0, vocab, (WINDOWS * bptt + 1) * batch, dtype=np.int32)


def timed(step, steps: int, warmup: int) -> dict:
  """The first call (compilation included) and the median of `steps` after `warmup` calls, in ms."""
  from benchmarks.common.timing import median_seconds, peak_rss_mib, seconds

  first_s = seconds(step)
  for _ in range(warmup - 1):
    step()
  step_s = median_seconds(step, steps)
  return {"train_ms": 1000 * step_s, "compile_s": first_s - step_s, "peak_rss_mib": peak_rss_mib()}


def run_lm_jax(config: dict, vocab: int, steps: int, warmup: int) -> dict:
  import jax
  import ml_collections

  from lm_jax import loss, optim
  from lm_jax.data.batching import put_on_device, window_bounds
  from lm_jax.models.registry import model_from_config
  from lm_jax.steps import TrainState, WindowAt, make_train_step

  c = ml_collections.ConfigDict(config)
  model = model_from_config(c.model, vocab)
  optimizer = optim.make_optimizer(c.optim)
  train_step = make_train_step(model, optimizer, c.bptt, reduction=c.loss_reduction, terms=loss.regularisers(c))
  split = put_on_device(stream(vocab, c.batch_size, c.bptt), c.batch_size, c.bptt)
  windows = [WindowAt(*w) for w in window_bounds(split.rows, c.bptt)]
  state, calls = TrainState.create(model, optimizer, c.seed, c.batch_size), 0

  def step():
    nonlocal state, calls
    state = jax.block_until_ready(train_step(state, windows[calls % len(windows)], split.padded_TxB)[0])
    calls += 1

  return {"device": str(jax.devices()[0].device_kind), "model": model.describe(), **timed(step, steps, warmup)}


def run_pytorch(config: dict, vocab: int, steps: int, warmup: int) -> dict:
  import torch

  from benchmarks.common.torch_device import device_description, prepare
  from torch_reference import awd_lstm
  from torch_reference.word_language_model import batchify, window

  device = prepare(config["seed"])
  m, batch, bptt = config["model"], config["batch_size"], config["bptt"]
  model = awd_lstm.AWDRNNModel(vocab, m["emsize"], m["nhid"], m["nlayers"], m["tied"], m["wdrop"] > 0).to(device)
  optimizer = torch.optim.SGD(model.parameters(), lr=config["optim"]["lr"],
                              weight_decay=config["optim"]["weight_decay"])
  data_TxB = batchify(torch.from_numpy(stream(vocab, batch, bptt)).long(), batch).to(device)
  hidden, calls = model.init_hidden(batch), 0
  rates = awd_lstm.DropoutRates(*(m[name] for name in awd_lstm.DropoutRates._fields))

  def step():
    nonlocal hidden, calls
    inputs_TxB, targets_TxB = window(data_TxB, (calls % WINDOWS) * bptt, bptt)
    _, hidden = awd_lstm.train_step(model, optimizer, inputs_TxB, targets_TxB, hidden,
                                    awd_lstm.sample_masks(model, batch, rates), config["ar_alpha"],
                                    config["tar_beta"], config["optim"]["clip"])  # .item(): waits for the device
    calls += 1

  return {"device": device_description(device), **timed(step, steps, warmup)}
