"""WikiText-2, medium: LSTM 2x650, dropout 0.5, tied, otherwise the reference recipe.

  lm-jax-train --config=configs/wt2_medium.py --config.data.dir=../shared/data/wikitext-2 --workdir=runs/wt2_medium
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.model.update(emsize=650, nhid=650, dropout=0.5, tied=True)
  return c
