"""The config schema with the reference defaults, and its validation.

Config files in configs/ start from `reference_config()` and change what they need; every field
a file may set lives here, so a typo in an override is an error rather than a silent no-op. Groups:
`data` (lm_jax/data/sources.py), `model` (its `kind` picks the family in lm_jax/models/registry.py,
which validates the rest), `optim` (lm_jax/optim.py), and the loop's own fields at the top level.
"""

from __future__ import annotations

import ml_collections

from lm_jax import loss, optim
from lm_jax.errors import UserError
from lm_jax.models import registry

DATA_SOURCES = ("dir", "hub", "synthetic", "articles")


def reference_config() -> ml_collections.ConfigDict:
  """PyTorch word_language_model defaults (LSTM 2x200, lr 20, clip 0.25, 40 epochs, batch 20, bptt 35)."""
  c = ml_collections.ConfigDict()
  c.data = ml_collections.ConfigDict(dict(
      source="dir",            # 'dir', 'hub', 'synthetic' or 'articles' (lm_jax/data/articles.py)
      dir="data/wikitext-2",   # holds train.txt, valid.txt, test.txt ('articles': train/valid/test.npy, vocab.txt)
      hub_name="wikitext-2",   # 'wikitext-2', 'wikitext-103', 'ptb', or a Hub repository id
      synthetic=ml_collections.ConfigDict(dict(
          seed=0, vocab_size=2000, num_classes=24,
          train_tokens=400_000, valid_tokens=40_000, test_tokens=40_000)),
      # Training articles in a new order each epoch, drawn from (seed, epoch); valid and test keep theirs.
      shuffle_articles=False,
  ))
  c.model = ml_collections.ConfigDict(dict(
      kind="rnn",      # the model family (lm_jax/models/registry.py): 'rnn' or 'transformer'
      # transformer: nhid is the feed-forward size, dropout the one on embedding + positions (the
      # reference's --dropout), cell and unroll unused, tied ignored as by the reference (transformer_tied).
      cell="lstm", emsize=200, nhid=200, nlayers=2, dropout=0.2, tied=False,
      init_range=0.1,  # embedding and decoder weights ~ U(-init_range, init_range)
      unroll=1,        # lax.scan unroll of the recurrence's forward (docs/performance.md: 1 is fastest here)
      # AWD-LSTM (salesforce/awd-lstm-lm; configs/awd_*.py). With tied, the last layer has emsize units.
      locked_dropout=False,  # True: one dropout mask per column per window, dropouti/dropouth/dropout as AWD's
      dropouti=0.0,    # locked dropout on the embedding output
      dropouth=0.0,    # locked dropout between layers
      dropoute=0.0,    # embedding dropout: whole word types dropped for the window
      wdrop=0.0,       # weight drop (DropConnect) on every hidden-to-hidden matrix, per window
      # transformer only (lm_jax/models/transformer.py); the defaults are the reference's.
      nhead=2,              # attention heads; must divide emsize
      layer_dropout=0.1,    # inside each encoder layer: nn.Transformer's default, which the reference keeps
      # Beyond the reference, each off by default:
      pre_norm=False,       # x + sublayer(LayerNorm(x)) in place of post-norm LayerNorm(x + sublayer(x))
      memory=0,             # > 0: carry that many positions' keys/values across windows (Transformer-XL-like)
      transformer_tied=False,  # decoder weight = the embedding matrix
      positions="absolute",    # 'relative': Transformer-XL's relative attention, u/v biases (models/positions.py)
      # rnn only: 'identity' is IRNN's init (Le et al., 2015): W_hh = recurrent_init_scale * I and zero biases,
      # for rnn_relu and rnn_tanh; 'uniform' is torch's U(-1/sqrt(H), 1/sqrt(H)) for every recurrent weight.
      recurrent_init="uniform",
      recurrent_init_scale=1.0,
      # A GloVe / word2vec / fastText text file (gzip or not) whose vectors replace the embedding rows of the
      # words it holds (exact word, else lower-cased) before the first step; its dimension must be emsize
      # (lm_jax/pretrained.py). Not re-read on --resume: the checkpoint holds the parameters.
      pretrained_embeddings="",
      freeze_embeddings=False,  # the embedding matrix gets no update (nor weight decay); tied: the decoder too
      # Both families. 'bfloat16': mixed precision, an approximation (lm_jax/models/precision.py): every
      # matmul takes bfloat16 inputs and accumulates in float32; parameters, optimiser state, softmax and
      # loss stay float32. What TPU and GPU runs use; 'float32' (exact, the reference's) is the default.
      matmul_dtype="float32",
      rnn_backend="scan",  # rnn only. 'cudnn': each LSTM layer one cuDNN kernel (models/cudnn_lstm.py: GPU, float32)
      # cell 'mogrifier_lstm' only (models/mogrifier.py; refused away from these defaults for other cells): rounds of
      # mutual gating of x and h before each LSTM step (0: the LSTM itself), and the rank of their matrices (0: full).
      mogrify_rounds=5, mogrify_rank=0,
  ))
  c.optim = ml_collections.ConfigDict(dict(
      name="sgd",           # lm_jax/optim.py OPTIMIZERS: 'sgd' (the reference), 'nt_asgd' (AWD-LSTM's), 'adam', 'adamw',
      lr=20.0,              # 'adadelta' (Kim 2014's), 'rmsprop' (lamb's: Adam with beta1 0; the Mogrifier LSTM's)
      clip=0.25,            # global gradient-norm clip, as torch's clip_grad_norm_; 0: none
      weight_decay=0.0,     # sgd, nt_asgd, adam: torch.optim's (wd * param added to the clipped gradient); adamw: decoupled
      schedule="plateau",   # lm_jax/optim.py SCHEDULES. 'plateau': lr /= lr_decay when validation does not improve;
                            # 'stlr': the slanted triangular lr per step (stlr_* below);
      lr_decay=4.0,         # 'decay_after': lr = lr0 / lr_decay ** max(0, epoch - lr_decay_start)
      lr_decay_start=0,
      when=(),              # 'when' (AWD-LSTM's): epochs after which lr /= 10
      nonmono=5,            # nt_asgd: averaging starts once validation is worse than the best but the last nonmono
      betas=(0.9, 0.999),   # adam, adamw: (beta1, beta2); ULMFiT's (0.7, 0.99)
      # Howard & Ruder's fine-tuning recipe (lm_jax/finetuning.py), for language models and classifiers alike:
      layer_lr_decay=1.0,   # each lower layer group's lr = the one above's / layer_lr_decay (ULMFiT: 2.6)
      unfreeze_every=0,     # > 0: gradual unfreezing, the top group first, one more group every that many epochs
      stage_lr_factors=(),  # with unfreezing: stage s trains at lr * stage_lr_factors[s], one per layer group; (): all 1
      stlr_cut_frac=0.1,    # schedule 'stlr' (slanted triangular, per step): the rising fraction of a cycle
      stlr_ratio=32.0,      # and the peak lr / the lowest
  ))
  # 'mean': the reference's loss, mean over every token of the window. 'sum_over_time': Zaremba et
  # al.'s, summed over time steps and averaged over the batch (T times larger, so are its lr and clip).
  c.loss_reduction = "mean"
  c.ar_alpha = 0.0          # AWD-LSTM's AR: ar_alpha * mean(h^2) of the last layer's dropped output
  c.tar_beta = 0.0          # AWD-LSTM's TAR: tar_beta * mean((h[t+1] - h[t])^2) of its raw output
  c.epochs = 40
  c.batch_size = 20
  c.eval_batch_size = 10
  c.test_batch_size = 10    # the reference's word_language_model scores test at 10; AWD-LSTM at 1
  c.bptt = 35
  c.variable_bptt = False   # AWD-LSTM's: bptt w.p. 0.95 else bptt/2, then N(., 5), lr scaled by length / bptt
  c.bptt_bucket = 5         # variable BPTT: a window runs at its length rounded up to a multiple of this, one
                            # program per such length; 0: every window at the longest (one program, more padding)
  c.finetune_from = ""      # a workdir: start from its best model (nt_asgd: averaging from the first step, as finetune.py)
  c.seed = 1111
  c.log_interval = 200      # windows between log lines
  c.checkpoint_every = 500  # windows between `latest` checkpoints (to resume from); 0: only at epoch ends
  c.lock()
  return c


def awd_lstm_config(dropouth: float, dropouti: float, seed: int, batch_size: int,
                    epochs: int) -> ml_collections.ConfigDict:
  """salesforce/awd-lstm-lm main.py's defaults (3-layer LSTM 1150 units, the last 400 tied; locked, embedding
  and weight dropout; AR 2, TAR 1; weight decay 1.2e-6; variable BPTT 70; NT-ASGD from lr 30; test at batch
  1) with the README's per-corpus flags (configs/awd_ptb.py, configs/awd_wt2.py)."""
  c = reference_config()
  c.model.update(cell="lstm", emsize=400, nhid=1150, nlayers=3, tied=True, locked_dropout=True, dropout=0.4,
                 dropouti=dropouti, dropouth=dropouth, dropoute=0.1, wdrop=0.5)
  c.optim.update(name="nt_asgd", lr=30.0, clip=0.25, weight_decay=1.2e-6, schedule="when", nonmono=5)
  c.update(ar_alpha=2.0, tar_beta=1.0, bptt=70, variable_bptt=True, batch_size=batch_size, eval_batch_size=10,
           test_batch_size=1, epochs=epochs, seed=seed, checkpoint_every=200)
  return c


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A config a run saved (config.json, checkpoint metadata), with the fields added to lm_jax since then at their
  defaults: every new field's default keeps the earlier behaviour, so old runs still load and resume."""
  c = reference_config()
  try:
    c.update(saved)
  except (KeyError, AttributeError, TypeError) as error:
    raise UserError(f"the saved run's config does not fit this version of lm_jax ({error}); load it with the "
                    "lm_jax version that trained it") from None
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the bad field and the fix."""

  def need(ok: bool, problem: str, fix: str) -> None:
    if not ok:
      raise UserError(f"{problem}; {fix}")

  for name in ("bptt", "batch_size", "eval_batch_size", "test_batch_size", "epochs", "log_interval"):
    need(c[name] > 0, f"config.{name} must be > 0 (got {c[name]})", f"pass --config.{name}=N with N >= 1")
  need(c.bptt_bucket >= 0, f"config.bptt_bucket must be >= 0 (got {c.bptt_bucket})",
       "pass --config.bptt_bucket=5, or 0 for one program at the longest window")
  need(c.checkpoint_every >= 0, f"config.checkpoint_every must be >= 0 (got {c.checkpoint_every})",
       "pass --config.checkpoint_every=N (0 checkpoints only at epoch ends)")
  need(c.loss_reduction in loss.REDUCTIONS, f"unknown loss_reduction {c.loss_reduction!r}",
       f"use one of {', '.join(loss.REDUCTIONS)}")
  late = [epoch for epoch in c.optim.when if isinstance(epoch, int) and epoch > c.epochs]
  need(not late, f"config.optim.when lists epoch {late[0] if late else 0}, past the last epoch {c.epochs}",
       "list epochs from 1 to config.epochs")
  need(not (c.finetune_from and c.model.pretrained_embeddings),
       "config.model.pretrained_embeddings fills the initial embeddings, which fine-tuning (config.finetune_from) "
       "replaces with another run's", "drop one of the two")
  need(c.data.source in DATA_SOURCES, f"unknown data source {c.data.source!r}",
       "use --config.data.source=dir, hub, synthetic or articles")
  registry.validate(c.model, reference_config().model)
  chosen = registry.family(c.model)
  loss.validate_regularisers(c, chosen.aux_outputs, chosen.kind)
  optim.validate(c.optim)
