"""The continuous cache pointer as salesforce/awd-lstm-lm's pointer.py evaluates it: batch 1, windows of
`bptt`, then a Python loop over every position that mixes the model's softmax with a pointer
distribution over the one-hot next words of the last `window` positions. Written anew in current
PyTorch with the same steps (the history of one-hot rows, the [window, V] product per token), so its
speed is the reference's. lm_jax's compiled cache is checked against it (tests/test_eval_methods.py)
and timed against it (benchmarks/eval_methods/).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from torch_reference.word_language_model import TorchRNNModel, detach, window as get_batch


def last_layer_and_logits(model: TorchRNNModel, inputs_TxB: torch.Tensor, hidden):
  """The last layer's output (what the pointer reads) and the logits."""
  h_TxBxH, hidden = model.rnn(model.encoder(inputs_TxB), hidden)
  return h_TxBxH, model.decoder(h_TxBxH), hidden


@torch.no_grad()
def pointer_token_nll(model: TorchRNNModel, data_Tx1: torch.Tensor, bptt: int, window: int, theta: float,
                      lam: float, max_tokens: int | None = None) -> list[float]:
  """-log p of each target in order, pointer.py's rule: the mixture at positions > window (counted from
  0 over the whole split, a choice that does not depend on `bptt`), over the previous `window` positions.
  Stops after `max_tokens` targets (for timing on a prefix)."""
  model.eval()
  vocab = model.decoder.out_features
  hidden = model.init_hidden(1)
  next_words, keys = None, None  # the history: one-hot next word and last-layer output per position
  seen, nlls = 0, []
  for start in range(0, data_Tx1.size(0) - 1, bptt):
    inputs, targets = get_batch(data_Tx1, start, bptt)
    h_TxBxH, logits_TxBxV, hidden = last_layer_and_logits(model, inputs, hidden)
    h_TxH = h_TxBxH[:, 0]
    one_hot_TxV = F.one_hot(targets[:, 0].long(), vocab).to(h_TxH.dtype)
    next_words = one_hot_TxV if next_words is None else torch.cat([next_words, one_hot_TxV])
    keys = h_TxH if keys is None else torch.cat([keys, h_TxH])
    first = seen - (len(keys) - len(h_TxH))  # position of history row 0
    softmax_TxV = F.softmax(logits_TxBxV[:, 0], dim=-1)
    for t, p in enumerate(softmax_TxV):
      position = seen + t
      if position > window:
        lo = position - window - first
        attention = F.softmax(theta * torch.mv(keys[lo:lo + window], h_TxH[t]), dim=0)
        p_cache = (attention[:, None] * next_words[lo:lo + window]).sum(0)
        p = lam * p_cache + (1 - lam) * p
      nlls.append(-torch.log(p[targets[t, 0]]).item())
      if max_tokens is not None and len(nlls) >= max_tokens:
        return nlls
    seen += len(h_TxH)
    hidden = detach(hidden)
    next_words, keys = next_words[-window:], keys[-window:]
  return nlls
