"""Kim (2014)'s CNN-rand on the benchmarks of his Table 2: widths 3,4,5 x 100 maps, ReLU, max-over-time pooling,
dropout 0.5, max-norm 3 on the output layer, Adadelta (rho 0.95), batch 50, 25 epochs, embeddings 300 drawn
U[-0.25, 0.25], clean_str, the model picked on dev accuracy (10% of train held out where the corpus has no dev).
Published CNN-rand test accuracy: MR 76.1 (10-fold), SST-1 45.0, SST-2 82.7, TREC 91.2. SST here is the
sentence-level files: Kim also trained on their phrases, which are not in them (SST-2's GLUE train holds them).
The corpus by the config string (../shared/data holds each; --config.data.path points elsewhere):
  lm-jax-classify --config=configs/classify_kim.py:mr --workdir=runs/kim_mr
  lm-jax-classify --config=configs/classify_kim.py:sst1 --workdir=runs/kim_sst1
  lm-jax-classify --config=configs/classify_kim.py:sst2 --workdir=runs/kim_sst2
  lm-jax-classify --config=configs/classify_kim.py:trec --workdir=runs/kim_trec
CNN-non-static / static / multichannel: add --config.model.embeddings=non-static
--config.model.pretrained_embeddings=vectors.txt (word2vec / GloVe / fastText text, 300-d).
"""

from lm_jax.classify.config import classify_config

CORPORA = {"mr": dict(source="mr", path="../shared/data/mr"),
           "sst1": dict(source="sst", path="../shared/data/sst", fine=True),
           "sst2": dict(source="sst2", path="../shared/data/sst2"),
           "trec": dict(source="trec", path="../shared/data/trec")}


def get_config(corpus: str = "mr"):
  if corpus not in CORPORA:
    raise ValueError(f"unknown corpus {corpus!r}: use one of {', '.join(CORPORA)}")
  c = classify_config("cnn")
  c.data.update(CORPORA[corpus], max_len=100)
  return c
