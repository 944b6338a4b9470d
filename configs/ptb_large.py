"""Penn Treebank, Zaremba et al. (2014) large: LSTM 2x1500, dropout 0.65, init ±0.04, lr 1 divided by
1.15 each epoch after epoch 14, 55 epochs, clip 10, bptt 35, batch 20 (paper: test ppl 78.4).

  lm-jax-train --config=configs/ptb_large.py --config.data.dir=../shared/data/ptb --workdir=runs/ptb_large
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.data.update(dir="data/ptb", hub_name="ptb")
  c.model.update(emsize=1500, nhid=1500, dropout=0.65, init_range=0.04)
  # Zaremba et al. sum the loss over time steps; their lr and clip are for that loss.
  c.update(loss_reduction="sum_over_time", epochs=55, bptt=35, batch_size=20)
  c.optim.update(lr=1.0, clip=10.0, schedule="decay_after", lr_decay=1.15, lr_decay_start=14)
  return c
