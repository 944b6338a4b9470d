"""The config schema with the reference defaults, and its validation.

Config files in configs/ start from `reference_config()` and change what they need; every field
a file may set lives here, so a typo in an override is an error rather than a silent no-op. Groups:
`data` (lm_jax/data/sources.py), `model` (its `kind` picks the family in lm_jax/models/registry.py,
which validates the rest), `optim` (lm_jax/optim.py), and the loop's own fields at the top level.
"""

from __future__ import annotations

import ml_collections

from lm_jax import optim
from lm_jax.errors import UserError
from lm_jax.loss import REDUCTIONS
from lm_jax.models import registry

DATA_SOURCES = ("dir", "hub", "synthetic")


def reference_config() -> ml_collections.ConfigDict:
  """PyTorch word_language_model defaults (LSTM 2x200, lr 20, clip 0.25, 40 epochs, batch 20, bptt 35)."""
  c = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict(dict(
      source="dir",            # 'dir', 'hub' or 'synthetic'
      dir="data/wikitext-2",   # holds train.txt, valid.txt, test.txt
      hub_name="wikitext-2",   # 'wikitext-2', 'wikitext-103', 'ptb', or a Hub repository id
      synthetic=ml_collections.ConfigDict(dict(
          seed=0, vocab_size=2000, num_classes=24,
          train_tokens=400_000, valid_tokens=40_000, test_tokens=40_000)),
  ))
  c.model = ml_collections.ConfigDict(dict(
      kind="rnn",      # the model family (lm_jax/models/registry.py): 'rnn' or 'transformer'
      # transformer: nhid is the feed-forward size, dropout the one on embedding + positions (the
      # reference's --dropout), cell and unroll unused, tied ignored as by the reference (transformer_tied).
      cell="lstm", emsize=200, nhid=200, nlayers=2, dropout=0.2, tied=False,
      init_range=0.1,  # embedding and decoder weights ~ U(-init_range, init_range)
      unroll=1,        # lax.scan unroll of the recurrence's forward (docs/performance.md: 1 is fastest here)
      # transformer only (lm_jax/models/transformer.py); the defaults are the reference's.
      nhead=2,              # attention heads; must divide emsize
      layer_dropout=0.1,    # inside each encoder layer: nn.Transformer's default, which the reference keeps
      # Beyond the reference, each off by default:
      pre_norm=False,       # x + sublayer(LayerNorm(x)) in place of post-norm LayerNorm(x + sublayer(x))
      memory=0,             # > 0: carry that many positions' keys/values across windows (Transformer-XL-like)
      transformer_tied=False,  # decoder weight = the embedding matrix
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name="sgd",           # lm_jax/optim.py OPTIMIZERS: 'sgd' (the reference) or 'adamw'
      lr=20.0,
      clip=0.25,            # global gradient-norm clip, as torch's clip_grad_norm_
      weight_decay=0.0,     # sgd: torch.optim.SGD's (wd * param added to the clipped gradient); adamw: decoupled
      schedule="plateau",   # lm_jax/optim.py SCHEDULES. 'plateau': lr /= lr_decay when validation does not improve;
      lr_decay=4.0,         # 'decay_after': lr = lr0 / lr_decay ** max(0, epoch - lr_decay_start)
      lr_decay_start=0,
  ))
  # 'mean': the reference's loss, mean over every token of the window. 'sum_over_time': Zaremba et
  # al.'s, summed over time steps and averaged over the batch (T times larger, so are its lr and clip).
  c.loss_reduction = "mean"
  c.epochs = 40
  c.batch_size = 20
  c.eval_batch_size = 10
  c.bptt = 35
  c.seed = 1111
  c.log_interval = 200      # windows between log lines
  c.checkpoint_every = 500  # windows between `latest` checkpoints (to resume from); 0: only at epoch ends
  c.lock()
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the bad field and the fix."""

  def need(ok: bool, problem: str, fix: str) -> None:
    if not ok:
      raise UserError(f"{problem}; {fix}")

  for name in ("bptt", "batch_size", "eval_batch_size", "epochs", "log_interval"):
    need(c[name] > 0, f"config.{name} must be > 0 (got {c[name]})", f"pass --config.{name}=N with N >= 1")
  need(c.checkpoint_every >= 0, f"config.checkpoint_every must be >= 0 (got {c.checkpoint_every})",
       "pass --config.checkpoint_every=N (0 checkpoints only at epoch ends)")
  need(c.loss_reduction in REDUCTIONS, f"unknown loss_reduction {c.loss_reduction!r}",
       f"use one of {', '.join(REDUCTIONS)}")
  need(c.data.source in DATA_SOURCES, f"unknown data source {c.data.source!r}",
       "use --config.data.source=dir, hub or synthetic")
  registry.validate(c.model)
  optim.validate(c.optim)
