"""Penn Treebank, Zaremba et al. (2014) medium: LSTM 2x650, dropout 0.5, init ±0.05, lr 1 divided by
1.2 each epoch after epoch 6, 39 epochs, clip 5, bptt 35, batch 20 (paper: test ppl 82.7).

  lm-jax-train --config=configs/ptb_medium.py --config.data.dir=../shared/data/ptb --workdir=runs/ptb_medium
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.data.update(dir="data/ptb", hub_name="ptb")
  c.model.update(emsize=650, nhid=650, dropout=0.5, init_range=0.05)
  # Zaremba et al. sum the loss over time steps; their lr and clip are for that loss.
  c.update(loss_reduction="sum_over_time", epochs=39, bptt=35, batch_size=20)
  c.optim.update(lr=1.0, clip=5.0, schedule="decay_after", lr_decay=1.2, lr_decay_start=6)
  return c
