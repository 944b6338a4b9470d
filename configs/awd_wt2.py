"""AWD-LSTM on WikiText-2 (salesforce/awd-lstm-lm README): main.py's defaults (lm_jax.config.
awd_lstm_config) with dropouth 0.2, dropouti 0.65, batch 80, 750 epochs, seed 1882. Reference: 68.7 / 65.6
valid / test; 67.4 / 64.7 after fine-tuning.
  lm-jax-train --config=configs/awd_wt2.py --config.data.dir=../shared/data/wikitext-2 --workdir=runs/awd_wt2
Fine-tune:
  lm-jax-train --config=configs/awd_wt2.py --config.data.dir=../shared/data/wikitext-2 \\
      --config.finetune_from=runs/awd_wt2 --workdir=runs/awd_wt2_finetune
"""

from lm_jax.config import awd_lstm_config


def get_config():
  c = awd_lstm_config(dropouth=0.2, dropouti=0.65, seed=1882, batch_size=80, epochs=750)
  c.data.update(dir="data/wikitext-2", hub_name="wikitext-2")
  return c
