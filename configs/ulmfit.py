"""ULMFiT's language-model stages (Howard & Ruder 2018; docs/classification.md, "ULMFiT"), sized for a 2-core CPU: a
3-layer AWD-LSTM, emsize 200, 400 hidden units (the last layer 200, tied), fastai's LM dropouts (output 0.1, hidden
0.15, input 0.25, embedding 0.02, weight 0.2), AR 2 / TAR 1, bptt 70, batch 32; Adam with betas (0.7, 0.99) on the
slanted triangular lr (one cycle per run). The full-size model is emsize 400, nhid 1150 (ULMFiT's 1152) on
WikiText-103: --config.model.emsize=400 --config.model.nhid=1150.

Step 1, the general LM (WikiText-2):
  lm-jax-train --config=configs/ulmfit.py:pretrain_wt2 --workdir=runs/ulmfit/wt2
  (measured: 2 epochs, valid ppl 183.13; 4 more in a new cycle, valid ppl 122.08:
  lm-jax-train --config=configs/ulmfit.py:pretrain_wt2 --config.finetune_from=runs/ulmfit/wt2 --config.epochs=4
  --workdir=runs/ulmfit6/wt2; then each step 2 with --config.finetune_from=runs/ulmfit6/wt2)
Step 2, the target corpus's training text written as an LM corpus, and the LM fine-tuned on it (its vocabulary
is the target text's; words WikiText-2 lacks start at its mean embedding), with discriminative lrs (/2.6 per layer
group below the embedding-and-decoder group) and STLR:
  lm-jax-classify-corpus --config=configs/classify_ulmfit.py:trec --output=runs/ulmfit/trec_text
  lm-jax-train --config=configs/ulmfit.py:finetune_trec --workdir=runs/ulmfit/trec_lm
  lm-jax-classify-corpus --config=configs/classify_ulmfit.py:imdb --output=runs/ulmfit/imdb_text --min_count=5
  lm-jax-train --config=configs/ulmfit.py:finetune_imdb --workdir=runs/ulmfit/imdb_lm
  (and mr, sst2 for trec: lm-jax-classify-corpus --config=configs/classify_ulmfit.py:mr --output=runs/ulmfit/mr_text)
Step 3, the classifier: configs/classify_ulmfit.py. Wall time per stage on a 2-core AMD EPYC with AVX-512, both cores
(docs/classification.md): pretraining ~7.4 min per epoch (~1 h for 8), MR's fine-tuning ~25 s per epoch, IMDB's
21 min (its one epoch, min_count 5).
"""

from lm_jax.config import reference_config

# The target text's folder (lm-jax-classify-corpus --output) and the fine-tuning's epochs, per classifier corpus.
TARGETS = {"finetune_trec": ("runs/ulmfit/trec_text", 6), "finetune_mr": ("runs/ulmfit/mr_text", 4),
           "finetune_sst2": ("runs/ulmfit/sst2_text", 2), "finetune_imdb": ("runs/ulmfit/imdb_text", 1)}


def get_config(stage: str = "pretrain_wt2"):
  c = reference_config()
  c.model.update(cell="lstm", emsize=200, nhid=400, nlayers=3, tied=True, locked_dropout=True, dropout=0.1,
                 dropouth=0.15, dropouti=0.25, dropoute=0.02, wdrop=0.2)
  c.optim.update(name="adam", betas=(0.7, 0.99), clip=0.25, weight_decay=1.2e-6, schedule="stlr")
  c.update(ar_alpha=2.0, tar_beta=1.0, bptt=70, batch_size=32, eval_batch_size=10, test_batch_size=10,
           log_interval=100, checkpoint_every=500)
  if stage == "pretrain_wt2":
    c.data.update(source="dir", dir="../shared/data/wikitext-2")
    c.optim.lr = 3e-3
    c.epochs = 8
  elif stage in TARGETS:
    c.data.dir, c.epochs = TARGETS[stage]
    c.finetune_from = "runs/ulmfit/wt2"
    c.optim.update(lr=2e-3, layer_lr_decay=2.6)
  else:
    raise ValueError(f"unknown stage {stage!r}: use pretrain_wt2, {', '.join(TARGETS)}")
  return c
