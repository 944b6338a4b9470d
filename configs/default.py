"""The PyTorch word_language_model defaults on WikiText-2: LSTM 2x200, dropout 0.2, untied, lr 20
divided by 4 when validation stalls, clip 0.25, 40 epochs, batch 20, bptt 35, seed 1111.

  lm-jax-train --config=configs/default.py --config.data.dir=../shared/data/wikitext-2 --workdir=runs/default

Without a local copy: --config.data.source=hub (downloads Salesforce/wikitext, wikitext-2-v1).
"""

from lm_jax.config import reference_config


def get_config():
  return reference_config()
