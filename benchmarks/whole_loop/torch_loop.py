"""PyTorch's side of the whole-loop benchmark: the reference main.py's train() over the first windows of an epoch,
built from torch_reference/word_language_model.py.

Per window, as main.py: get_batch's slice of the batchified split on the device, then the train step
(repackage_hidden, zero_grad, forward, cross-entropy, backward, clip_grad_norm_, p -= lr * grad, all in
`train_window`), `total_loss += loss.item()` (a host sync every window), and the log line printed when
`batch % log_interval == 0 and batch > 0`.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Iterator

import torch

from benchmarks.common.timing import peak_rss_mib
from benchmarks.common.torch_device import device_description, prepare
from torch_reference.word_language_model import TorchRNNModel, batchify, read_corpus, train_window, window


def reference_train(model: TorchRNNModel, train_TxB: torch.Tensor, bptt: int, lr: float, clip: float,
                    log_interval: int) -> Iterator[bool]:
  """main.py's train() for epoch 1, one window per step of the generator: yields, once the window is done,
  whether it printed a log line."""
  total_loss, start_time = 0.0, time.time()
  hidden = model.init_hidden(train_TxB.size(1))
  for batch, i in enumerate(range(0, train_TxB.size(0) - 1, bptt)):
    loss, hidden = train_window(model, *window(train_TxB, i, bptt), hidden, lr, clip)
    total_loss += loss
    logged = batch % log_interval == 0 and batch > 0
    if logged:
      cur_loss, elapsed = total_loss / log_interval, time.time() - start_time
      print(f"| epoch   1 | {batch:5d}/{len(train_TxB) // bptt:5d} batches | lr {lr:02.2f} | ms/batch "
            f"{elapsed * 1000 / log_interval:5.2f} | loss {cur_loss:5.2f} | ppl {math.exp(cur_loss):8.2f}")
      total_loss, start_time = 0.0, time.time()
    yield logged


def run(config: dict, warmup: int, windows: int) -> dict:
  """`config`: lm_jax's config as a dict (the same settings both sides run). Times windows [warmup, warmup +
  windows) of epoch 1 by wall clock; the corpus load and the first `warmup` windows are timed apart."""
  device = prepare(config["seed"])
  begin = time.perf_counter()
  ids, vocab_size = read_corpus(config["data"]["dir"])
  # main.py batchifies all three splits onto the device before training.
  batches = {"train": config["batch_size"], "valid": config["eval_batch_size"], "test": config["test_batch_size"]}
  splits = {split: batchify(ids[split], batch).to(device) for split, batch in batches.items()}
  load_s = time.perf_counter() - begin
  m = config["model"]
  model = TorchRNNModel(m["cell"], vocab_size, m["emsize"], m["nhid"], m["nlayers"], m["dropout"], m["tied"]).to(device)
  loop = reference_train(model, splits["train"], config["bptt"], config["optim"]["lr"], config["optim"]["clip"],
                         config["log_interval"])
  begin = time.perf_counter()
  # Every window ends in loss.item(), which waits for the device: the clock after it is the window's end.
  window_ends, logged = [], []
  for window_logged in itertools.islice(loop, warmup + windows):
    window_ends.append(time.perf_counter())
    logged.append(window_logged)
  return {"device": device_description(device), "load_s": load_s, "warmup_s": window_ends[warmup - 1] - begin,
          "timed_s": window_ends[-1] - window_ends[warmup - 1], "log_lines": sum(logged[warmup:]),
          "peak_rss_mib": peak_rss_mib()}
