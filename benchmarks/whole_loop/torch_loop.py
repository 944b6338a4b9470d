"""PyTorch's side of the whole-loop benchmark: a reference main.py's train() over the first windows of epoch 1.

`run`: PyTorch's word_language_model, built from torch_reference/word_language_model.py. Per window, as its
main.py: get_batch's slice of the batchified split on the device, then the train step (repackage_hidden,
zero_grad, forward, cross-entropy, backward, clip_grad_norm_, p -= lr * grad, all in `train_window`),
`total_loss += loss.item()` (a host sync every window), and the log line printed when
`batch % log_interval == 0 and batch > 0`.

`run_awd`: salesforce/awd-lstm-lm, built from torch_reference/awd_lstm.py. Per window, as its main.py: the
window's length drawn from numpy (70 w.p. 0.95 else 35, then N(that, 5), at least 5), the lr scaled by
seq_len / bptt for this step, get_batch, fresh dropout masks (embedding, locked, weight drop), repackage_hidden,
zero_grad, forward, cross-entropy + AR + TAR, backward, clip_grad_norm_, SGD with weight decay, the lr restored,
`total_loss += raw_loss.data` (no host sync: the log line's `.item()` is the only one), and its log line.

Both run under torch.autocast in lm_jax's config.model.matmul_dtype when it is bfloat16 (the forward and the
loss; not the references' own: they train in float32).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch

from benchmarks.common.timing import peak_rss_mib
from benchmarks.common.torch_device import autocast_dtype, device_description, prepare
from torch_reference import awd_lstm
from torch_reference.word_language_model import TorchRNNModel, batchify, read_corpus, train_window, window


class WindowDone(NamedTuple):
  steps: int     # the window's length
  logged: bool   # whether it printed a log line


def reference_train(model: TorchRNNModel, train_TxB: torch.Tensor, bptt: int, lr: float, clip: float,
                    log_interval: int, lower_dtype: torch.dtype | None = None) -> Iterator[WindowDone]:
  """word_language_model main.py's train() for epoch 1, one window per step of the generator; with a
  `lower_dtype`, its forward and loss under torch.autocast."""
  total_loss, start_time = 0.0, time.time()
  hidden = model.init_hidden(train_TxB.size(1))
  for batch, i in enumerate(range(0, train_TxB.size(0) - 1, bptt)):
    inputs_TxB, targets_TxB = window(train_TxB, i, bptt)
    loss, hidden = train_window(model, inputs_TxB, targets_TxB, hidden, lr, clip, lower_dtype)
    total_loss += loss
    logged = batch % log_interval == 0 and batch > 0
    if logged:
      cur_loss, elapsed = total_loss / log_interval, time.time() - start_time
      print(f"| epoch   1 | {batch:5d}/{len(train_TxB) // bptt:5d} batches | lr {lr:02.2f} | ms/batch "
            f"{elapsed * 1000 / log_interval:5.2f} | loss {cur_loss:5.2f} | ppl {math.exp(cur_loss):8.2f}")
      total_loss, start_time = 0.0, time.time()
    yield WindowDone(len(inputs_TxB), logged)


def awd_reference_train(model: awd_lstm.AWDRNNModel, optimizer: torch.optim.Optimizer, train_TxB: torch.Tensor,
                        windows: Iterable[tuple[int, int, float]], rates: awd_lstm.DropoutRates, alpha: float,
                        beta: float, clip: float, bptt: int, log_interval: int,
                        lower_dtype: torch.dtype | None = None) -> Iterator[WindowDone]:
  """awd-lstm-lm main.py's train() for epoch 1 over `windows` (awd_lstm.variable_windows'), one window per step
  of the generator; with a `lower_dtype`, its loss under torch.autocast."""
  batch_size = train_TxB.size(1)
  total_loss, start_time = 0.0, time.time()
  hidden = model.init_hidden(batch_size)
  for batch, (start, length, lr_scale) in enumerate(windows):
    inputs_TxB, targets_TxB = window(train_TxB, start, length)
    raw_loss, hidden = awd_lstm.train_window(model, optimizer, inputs_TxB, targets_TxB, hidden,
                                             awd_lstm.sample_masks(model, batch_size, rates), alpha, beta, clip,
                                             lr_scale, lower_dtype)
    total_loss += raw_loss
    logged = batch % log_interval == 0 and batch > 0
    if logged:
      cur_loss, elapsed = total_loss.item() / log_interval, time.time() - start_time
      lr = optimizer.param_groups[0]["lr"]  # restored after the step
      print(f"| epoch   1 | {batch:5d}/{len(train_TxB) // bptt:5d} batches | lr {lr:05.5f} "
            f"| ms/batch {elapsed * 1000 / log_interval:5.2f} | loss {cur_loss:5.2f} | ppl {math.exp(cur_loss):8.2f} "
            f"| bpc {cur_loss / math.log(2):8.3f}")
      total_loss, start_time = 0.0, time.time()
    yield WindowDone(len(inputs_TxB), logged)


def run(config: dict, warmup: int, windows: int) -> dict:
  """`config`: lm_jax's config as a dict (the same settings both sides run). Times windows [warmup, warmup +
  windows) of epoch 1 by wall clock; the corpus load and the first `warmup` windows are timed apart."""
  device = prepare(config["seed"])
  splits, vocab_size, load_s = load_splits(config, device)
  m = config["model"]
  model = TorchRNNModel(m["cell"], vocab_size, m["emsize"], m["nhid"], m["nlayers"], m["dropout"], m["tied"]).to(device)
  loop = reference_train(model, splits["train"], config["bptt"], config["optim"]["lr"], config["optim"]["clip"],
                         config["log_interval"], autocast_dtype(m["matmul_dtype"]))
  return {"device": device_description(device), "load_s": load_s,
          **time_windows(loop, warmup, windows, config["batch_size"], device), "peak_rss_mib": peak_rss_mib()}


def run_awd(config: dict, warmup: int, windows: int) -> dict:
  """`run` for configs/awd_ptb.py's settings, with awd-lstm-lm's main.py: its model and optimizer, its windows
  drawn from numpy seeded as main.py seeds it."""
  device = prepare(config["seed"])
  splits, vocab_size, load_s = load_splits(config, device)
  m, o = config["model"], config["optim"]
  model = awd_lstm.AWDRNNModel(vocab_size, m["emsize"], m["nhid"], m["nlayers"], m["tied"], m["wdrop"] > 0).to(device)
  # Epoch 1 runs before NT-ASGD's switch, which main.py decides at an epoch's end: plain SGD with weight decay.
  optimizer = torch.optim.SGD(model.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
  train_TxB = splits["train"]
  loop = awd_reference_train(
      model, optimizer, train_TxB,
      awd_lstm.variable_windows(train_TxB.size(0), config["bptt"], np.random.RandomState(config["seed"])),
      awd_lstm.DropoutRates(*(m[name] for name in awd_lstm.DropoutRates._fields)), config["ar_alpha"],
      config["tar_beta"], o["clip"], config["bptt"], config["log_interval"], autocast_dtype(m["matmul_dtype"]))
  return {"device": device_description(device), "load_s": load_s,
          **time_windows(loop, warmup, windows, config["batch_size"], device), "peak_rss_mib": peak_rss_mib()}


def load_splits(config: dict, device: torch.device) -> tuple[dict[str, torch.Tensor], int, float]:
  """main.py's corpus batchified onto the device, all three splits as main.py does before training; the
  dictionary's size and the seconds it took."""
  begin = time.perf_counter()
  ids, vocab_size = read_corpus(config["data"]["dir"])
  batches = {"train": config["batch_size"], "valid": config["eval_batch_size"], "test": config["test_batch_size"]}
  splits = {split: batchify(ids[split], batch).to(device) for split, batch in batches.items()}
  return splits, vocab_size, time.perf_counter() - begin


def time_windows(loop: Iterator[WindowDone], warmup: int, windows: int, batch_size: int,
                 device: torch.device) -> dict:
  """Runs `loop`'s first warmup + windows windows; the seconds of the first `warmup` and of the next `windows`,
  the log lines and tokens (steps x batch) of those. The clock waits for the device at both boundaries only:
  a loop that never syncs (awd-lstm-lm's) keeps its own rhythm in between."""
  sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
  begin = time.perf_counter()
  warmed_up = sum(1 for _ in itertools.islice(loop, warmup))
  sync()
  warmed = time.perf_counter()
  timed = list(itertools.islice(loop, windows))
  sync()
  end = time.perf_counter()
  if warmed_up + len(timed) < warmup + windows:
    raise RuntimeError(f"epoch 1 ended after {warmed_up + len(timed)} windows, before window {warmup + windows}")
  return {"warmup_s": warmed - begin, "timed_s": end - warmed, "log_lines": sum(done.logged for done in timed),
          "timed_tokens": sum(done.steps for done in timed) * batch_size}
