"""A 3-layer LSTM overfitting on purpose: the embedded synthetic corpus cut to 100k training tokens, where
the true-source floor is known exactly. Two recipes, chosen by the config string:
  word_language_model: LSTM 3x400, dropout 0.2, SGD lr 20 / 4 on plateau, clip 0.25 (untied)
  awd: AWD-LSTM's regularisers and NT-ASGD on the same 3 layers (tied: 400/400/200)
  lm-jax-train --config=configs/synthetic_overfit.py:word_language_model --workdir=runs/overfit_wlm
  lm-jax-train --config=configs/synthetic_overfit.py:awd --workdir=runs/overfit_awd
"""

from lm_jax.config import awd_lstm_config, reference_config


def get_config(recipe: str = "awd"):
  if recipe == "awd":
    c = awd_lstm_config(dropouth=0.25, dropouti=0.4, seed=141, batch_size=20, epochs=15)
    c.model.update(emsize=200, nhid=400)
    c.update(bptt=35, test_batch_size=10)
  elif recipe == "word_language_model":
    c = reference_config()
    c.model.update(nlayers=3, emsize=400, nhid=400)
    c.update(epochs=15)
  else:
    raise ValueError(f"unknown recipe {recipe!r}: use word_language_model or awd")
  c.data.source = "synthetic"
  c.data.synthetic.update(train_tokens=100_000, valid_tokens=20_000, test_tokens=20_000)
  c.log_interval = 50
  return c
