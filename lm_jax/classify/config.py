"""The classification task's config schema: `data` (lm_jax/classify/data/config.py), `model` (a classifier family's
fields, lm_jax/classify/models), `optim` (the language models' group, lm_jax/optim.py) and the loop's own fields.
The defaults are Kim (2014)'s CNN recipe: Adadelta (rho 0.95, eps 1e-6, lr 1, no clipping), batch 50, 25 epochs,
the model picked on dev accuracy."""

from __future__ import annotations

import ml_collections

from lm_jax import config as lm_config, optim
from lm_jax.classify.data import config as data_lib
from lm_jax.classify.models import registry
from lm_jax.errors import UserError


def classify_config(kind: str = "cnn") -> ml_collections.ConfigDict:
  """The `kind` classifier with its family's defaults on the synthetic corpus, trained as Kim trained his CNN."""
  c = ml_collections.ConfigDict()
  c.data = data_lib.data_config()
  c.data.unlock()
  c.model = registry.default_model_config(kind)
  # GloVe / word2vec / fastText text, or an lm_jax LM's export (lm-jax-embeddings --export): the embedding rows
  # of the words it holds, for embeddings 'static', 'non-static' and 'multichannel' (lm_jax/pretrained.py).
  c.model.pretrained_embeddings = ""
  c.optim = lm_config.reference_config().optim
  c.optim.unlock()
  # lr_decay 1: the plateau schedule keeps the lr (Kim's is constant).
  c.optim.update(name="adadelta", lr=1.0, clip=0.0, schedule="plateau", lr_decay=1.0)
  c.epochs = 25
  c.batch_size = 50
  c.eval_batch_size = 200
  c.seed = 0
  c.log_interval = 50       # batches between log lines
  c.checkpoint_every = 0    # batches between `latest` checkpoints (to resume from); 0: only at epoch ends
  c.lock()
  return c


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A config a classification run saved (config.json, checkpoint metadata), fields added since at their defaults."""
  try:
    c = classify_config(saved["model"]["kind"])
    c.update(saved)
  except (KeyError, AttributeError, TypeError, UserError) as error:
    raise UserError(f"the saved run's config does not fit this version of lm_jax's classifiers ({error}); load it "
                    "with the lm_jax version that trained it") from None
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the bad field and the fix."""
  for name in ("epochs", "batch_size", "eval_batch_size", "log_interval"):
    if c[name] <= 0:
      raise UserError(f"config.{name} must be > 0 (got {c[name]}); pass --config.{name}=N with N >= 1")
  if c.checkpoint_every < 0:
    raise UserError(f"config.checkpoint_every must be >= 0 (got {c.checkpoint_every}); pass --config.checkpoint_every=N "
                    "(0 checkpoints only at epoch ends)")
  data_lib.validate(c.data)
  registry.validate(c.model)
  optim.validate(c.optim)
