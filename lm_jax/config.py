"""The config schema with the reference defaults, and its validation.

Config files in configs/ start from `reference_config()` and change what they need; every field
a file may set lives here, so a typo in an override is an error rather than a silent no-op.
"""

from __future__ import annotations

import ml_collections

from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS

LR_RULES = ("plateau", "decay_after")
OPTIMIZERS = ("sgd", "adamw")
LOSS_REDUCTIONS = ("mean", "sum_over_time")


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
      cell="lstm", emsize=200, nhid=200, nlayers=2, dropout=0.2, tied=False,
      init_range=0.1,  # embedding and decoder weights ~ U(-init_range, init_range)
      unroll=1,        # lax.scan unroll of the recurrence's forward (docs/performance.md: 1 is fastest here)
  ))
  c.optimizer = "sgd"       # 'sgd' (the reference) or 'adamw'
  c.lr = 20.0
  c.clip = 0.25             # global gradient-norm clip
  # 'mean': the reference's loss, mean over every token of the window. 'sum_over_time': Zaremba et
  # al.'s, summed over time steps and averaged over the batch (T times larger, so are its lr and clip).
  c.loss_reduction = "mean"
  c.weight_decay = 0.0      # adamw only
  c.lr_rule = "plateau"     # 'plateau': lr /= lr_decay when validation loss does not improve
  c.lr_decay = 4.0          # 'decay_after': lr = lr0 / lr_decay ** max(0, epoch - lr_decay_start)
  c.lr_decay_start = 0
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
  m = c.model
  need(m.cell in CELLS, f"unknown cell {m.cell!r}", f"use one of {', '.join(CELLS)}")
  for name in ("emsize", "nhid", "nlayers", "unroll"):
    need(m[name] > 0, f"config.model.{name} must be > 0 (got {m[name]})", f"pass --config.model.{name}=N")
  need(0.0 <= m.dropout < 1.0, f"config.model.dropout must be in [0, 1) (got {m.dropout})",
       "pass e.g. --config.model.dropout=0.2")
  need(not m.tied or m.nhid == m.emsize,
       f"a tied model needs nhid == emsize (got nhid {m.nhid}, emsize {m.emsize})",
       "set --config.model.emsize and --config.model.nhid equal, or --config.model.tied=False")
  need(m.init_range > 0, f"config.model.init_range must be > 0 (got {m.init_range})", "pass e.g. 0.1")
  need(c.optimizer in OPTIMIZERS, f"unknown optimizer {c.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
  need(c.lr > 0, f"config.lr must be > 0 (got {c.lr})", "pass e.g. --config.lr=20")
  need(c.clip > 0, f"config.clip must be > 0 (got {c.clip})", "pass e.g. --config.clip=0.25")
  need(c.loss_reduction in LOSS_REDUCTIONS, f"unknown loss_reduction {c.loss_reduction!r}",
       f"use one of {', '.join(LOSS_REDUCTIONS)}")
  need(c.lr_rule in LR_RULES, f"unknown lr_rule {c.lr_rule!r}", f"use one of {', '.join(LR_RULES)}")
  need(c.lr_decay >= 1.0, f"config.lr_decay must be >= 1 (got {c.lr_decay})", "it divides the lr, e.g. 4")
  need(c.data.source in ("dir", "hub", "synthetic"), f"unknown data source {c.data.source!r}",
       "use --config.data.source=dir, hub or synthetic")
