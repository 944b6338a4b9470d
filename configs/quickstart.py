"""Quickstart: a small LSTM on the embedded synthetic corpus, trained in about a minute on a laptop
CPU. The corpus comes from a source whose probabilities are known, so the end of training prints the
true-source perplexity floor beside the model's perplexity.

  lm-jax-train --config=configs/quickstart.py --workdir=runs/quickstart
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.data.source = "synthetic"
  c.model.update(emsize=128, nhid=256, nlayers=1, dropout=0.0)
  c.optim.update(name="adamw", lr=3e-3, clip=1.0, schedule="decay_after", lr_decay=3.0, lr_decay_start=2)
  c.update(epochs=4, batch_size=32, bptt=35, log_interval=100)
  return c
