"""ULMFiT's classifier (Howard & Ruder 2018; docs/classification.md, "ULMFiT"), step 3 of three (steps 1 and 2, the
language models: configs/ulmfit.py): the fine-tuned LM's encoder (config.model.kind lm_encoder), concat pooling
[last, max, mean], fastai's head (dropout 0.4, 50 ReLU units, dropout 0.1), BPT3C over chunks of 70 tokens; Adam
with betas (0.7, 0.99), discriminative lrs (/2.6 per group: embedding, 3 layers, head), the slanted triangular lr
(cut_frac 0.1, ratio 32, a cycle per unfreezing stage) and gradual unfreezing (the head alone in epoch 1, one more
group per epoch: all 5 train from epoch 5), no clipping, the model picked on dev accuracy. Text is read as the LM was
trained (clean_str, case kept: WikiText is cased); lm-jax-classify-corpus writes the LM's text from these configs.
  lm-jax-classify --config=configs/classify_ulmfit.py:trec --workdir=runs/ulmfit/trec
  lm-jax-classify --config=configs/classify_ulmfit.py:imdb --workdir=runs/ulmfit/imdb
  (and :mr, :sst2 with runs/ulmfit/mr_lm, runs/ulmfit/sst2_lm from configs/ulmfit.py:finetune_mr, :finetune_sst2)
The ablation's rows (docs/classification.md): --config.model.from_scratch=True (no LM pretraining);
--config.model.encoder_from=runs/ulmfit/wt2 (WikiText-2 only); and without the recipe:
--config.optim.layer_lr_decay=1 --config.optim.unfreeze_every=0 --config.optim.schedule=plateau, a constant lr: at
the default 1e-2 IMDB's row stays at chance; at --config.optim.lr=1e-3 it scores 90.9 (the recipe 90.4), and TREC's
92.3 (the recipe on the same LM 91.4). fastai's tutorial's lower lr per unfreezing stage,
--config.optim.stage_lr_factors='(2,1,0.5,0.1,0.1)', scores 86.2 on TREC; --config.epochs=15, 92.2. From the
6-epoch WikiText-2 LM (configs/ulmfit.py) TREC's WikiText-2-only row at lr 1e-3 scores 93.9, the recipe 92.9.
"""

from lm_jax.classify.config import classify_config

# corpus -> (config.data, epochs, batch size). Every corpus trains at least 5 epochs: gradual unfreezing trains all
# 5 layer groups from epoch 5 (and refuses fewer epochs).
CORPORA = {
    # TREC-6: 5,452 training questions (10% held out as dev), 500 test; at most 37 tokens.
    "trec": (dict(source="trec", path="../shared/data/trec", max_len=64), 8, 32),
    # MR: 10,662 sentences, 10-fold cross-validated (a run per fold); SST-2: GLUE's 67,349 training phrases.
    "mr": (dict(source="mr", path="../shared/data/mr", max_len=100), 8, 32),
    "sst2": (dict(source="sst2", path="../shared/data/sst2", max_len=100), 5, 32),
    # IMDB: 25,000 training reviews (10% held out as dev), 25,000 test; the longest training review has 2,613 tokens
    # (the run prints how many of any split are cut at 3,000). BPT3C pools and
    # back-propagates the last 400 tokens of each review (fastai: 1,400), the rest run in 70-token chunks.
    "imdb": (dict(source="imdb", path="../shared/data/imdb/aclImdb_v1.tar.gz", max_len=3000), 6, 32),
}


def get_config(corpus: str = "trec"):
  if corpus not in CORPORA:
    raise ValueError(f"unknown corpus {corpus!r}: use one of {', '.join(CORPORA)}")
  data, epochs, batch_size = CORPORA[corpus]
  c = classify_config("lm_encoder")
  c.data.update(data, lowercase=False)
  c.model.update(encoder_from=f"runs/ulmfit/{corpus}_lm", max_len=400)
  c.optim.update(name="adam", lr=1e-2, betas=(0.7, 0.99), clip=0.0, weight_decay=1e-7, schedule="stlr",
                 layer_lr_decay=2.6, unfreeze_every=1)
  c.update(epochs=epochs, batch_size=batch_size, eval_batch_size=64, log_interval=50)
  return c
