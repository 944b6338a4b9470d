"""The classification quick start: a small Kim CNN on the embedded synthetic labelled corpus, whose exact Bayes
accuracy (the best any classifier can expect) is printed beside the test accuracy. Recipes by the config string:
  cnn (default): Kim's CNN, widths 3,4,5 x 50 maps, embeddings 64, Adadelta, 6 epochs
  rnn: a GRU 64 read out by its masked mean, Adam
  lm-jax-classify --config=configs/classify_synthetic.py --workdir=runs/classify_synthetic
  lm-jax-classify --config=configs/classify_synthetic.py:rnn --workdir=runs/classify_synthetic_rnn
"""

from lm_jax.classify.config import classify_config


def get_config(recipe: str = "cnn"):
  if recipe == "cnn":
    c = classify_config("cnn")
    c.model.update(emsize=64, filter_maps=50)
  elif recipe == "rnn":
    c = classify_config("rnn")
    c.model.update(emsize=64, nhid=64, readout="mean", hidden=0)
    c.optim.update(name="adam", lr=3e-3)
  else:
    raise ValueError(f"unknown recipe {recipe!r}: use cnn or rnn")
  c.epochs = 6
  return c
