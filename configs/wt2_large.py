"""WikiText-2, large: LSTM 2x1500, dropout 0.65, tied, otherwise the reference recipe.

  lm-jax-train --config=configs/wt2_large.py --config.data.dir=../shared/data/wikitext-2 --workdir=runs/wt2_large
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.model.update(emsize=1500, nhid=1500, dropout=0.65, tied=True)
  return c
