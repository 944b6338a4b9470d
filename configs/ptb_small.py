"""Penn Treebank, Zaremba et al. (2014) small: LSTM 2x200, no dropout, init ±0.1, lr 1 halved each
epoch after epoch 4, 13 epochs, clip 5, bptt 20, batch 20 (paper: test ppl 114.5).

  lm-jax-train --config=configs/ptb_small.py --config.data.dir=../shared/data/ptb --workdir=runs/ptb_small
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.data.update(dir="data/ptb", hub_name="ptb")
  c.model.update(emsize=200, nhid=200, dropout=0.0, init_range=0.1)
  # Zaremba et al. sum the loss over time steps; their lr and clip are for that loss.
  c.update(loss_reduction="sum_over_time", epochs=13, bptt=20, batch_size=20)
  c.optim.update(lr=1.0, clip=5.0, schedule="decay_after", lr_decay=2.0, lr_decay_start=4)
  return c
