"""Dynamic evaluation as benkrause/dynamic-evaluation's dynamiceval.py runs it, in current PyTorch:
gradstat() on the training split, then at batch 1 each segment of `bptt` is scored, its mean
cross-entropy back-propagated, and every parameter moved by the RMS rule with decay towards the trained
weights (or, `rule='sgd'`, by plain SGD). lm_jax's compiled pass is checked against it
(tests/test_eval_methods.py). It also returns each position's last-layer output, so that the cache
pointer can be mixed in by an independent re-implementation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from torch_reference.cache_pointer import last_layer_and_logits
from torch_reference.word_language_model import TorchRNNModel, detach, window as get_batch


def gradient_statistics(model: TorchRNNModel, train_TxB: torch.Tensor, bptt: int) -> tuple[list, torch.Tensor]:
  """gradstat(): per parameter sqrt(mean over segments of grad^2), and gsum = mean over tensors of its mean.
  Like the reference, the loop runs while start < rows - 2."""
  model.eval()
  params = list(model.parameters())
  ms = [torch.zeros_like(p) for p in params]
  hidden, segments, start = model.init_hidden(train_TxB.size(1)), 0, 0
  while start < train_TxB.size(0) - 2:
    inputs, targets = get_batch(train_TxB, start, bptt)
    hidden = detach(hidden)
    model.zero_grad()
    logits, hidden = model(inputs, hidden)
    F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).backward()
    for m, p in zip(ms, params):
      m += p.grad * p.grad
    segments += 1
    start += bptt
  ms = [torch.sqrt(m / segments) for m in ms]
  return ms, sum(m.mean() for m in ms) / len(ms)


def dynamic_token_nll(model: TorchRNNModel, data_Tx1: torch.Tensor, bptt: int, lr: float, lamb: float,
                      epsilon: float, ms: list | None, gsum: torch.Tensor | None, rule: str = "rms"
                      ) -> tuple[list[float], torch.Tensor]:
  """-log p of every target (each segment scored before its update) and the last-layer outputs [T, H].
  Every target is scored (the reference's loop also skips a final segment of one token)."""
  params = list(model.parameters())
  params0 = [p.detach().clone() for p in params]
  decrate = None if ms is None else [torch.clamp(m / gsum, max=1 / lamb) if lamb > 0 else m / gsum for m in ms]
  hidden, nlls, features = model.init_hidden(1), [], []
  for start in range(0, data_Tx1.size(0) - 1, bptt):
    inputs, targets = get_batch(data_Tx1, start, bptt)
    hidden = detach(hidden)
    model.zero_grad()
    h_TxBxH, logits_TxBxV, hidden = last_layer_and_logits(model, inputs, hidden)
    nll_T = F.cross_entropy(logits_TxBxV[:, 0], targets[:, 0], reduction="none")
    nll_T.mean().backward()
    nlls += nll_T.tolist()
    features.append(h_TxBxH[:, 0].detach())
    with torch.no_grad():
      for i, p in enumerate(params):
        if rule == "sgd":
          p -= lr * p.grad
        else:
          p += lamb * decrate[i] * (params0[i] - p) - lr * p.grad / (ms[i] + epsilon)
  return nlls, torch.cat(features)
