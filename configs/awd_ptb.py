"""AWD-LSTM on Penn Treebank (salesforce/awd-lstm-lm README): main.py's defaults (lm_jax.config.
awd_lstm_config) with dropouti 0.4, dropouth 0.25, batch 20, 500 epochs, seed 141. Reference: 61.2 / 58.8
valid / test; 58.8 / 56.5 after fine-tuning.
  lm-jax-train --config=configs/awd_ptb.py --config.data.dir=../shared/data/ptb --workdir=runs/awd_ptb
Fine-tune (the reference's finetune.py: its best model, averaged SGD from the first step):
  lm-jax-train --config=configs/awd_ptb.py --config.data.dir=../shared/data/ptb \\
      --config.finetune_from=runs/awd_ptb --workdir=runs/awd_ptb_finetune
"""

from lm_jax.config import awd_lstm_config


def get_config():
  c = awd_lstm_config(dropouth=0.25, dropouti=0.4, seed=141, batch_size=20, epochs=500)
  c.data.update(dir="data/ptb", hub_name="ptb")
  return c
