"""A trained model loaded back from a workdir's checkpoint, with its own vocabulary and config."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from lm_jax import checkpoints
from lm_jax.config import from_saved
from lm_jax.data.sources import Corpus, load_corpus
from lm_jax.data.vocab import Vocabulary
from lm_jax.errors import UserError
from lm_jax.models.interface import LanguageModel, Params
from lm_jax.models.registry import model_from_config


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  model: LanguageModel
  params: Params
  vocab: Vocabulary
  config: ml_collections.ConfigDict


def load(workdir: str, kind: str = checkpoints.BEST) -> TrainedModel:
  """The model, parameters, vocabulary and config of the newest `kind` checkpoint in `workdir`."""
  meta = checkpoints.restore_meta(workdir, kind)
  config = from_saved(meta["config"])
  vocab = Vocabulary(meta["vocab"])
  model = model_from_config(config.model, len(vocab))
  like_params = jax.eval_shape(lambda: model.init_params(0))
  state, _ = checkpoints.restore(workdir, kind, {"params": like_params})
  return TrainedModel(model, state["params"], vocab, config)


def corpus_of(run: TrainedModel, data_dir: str | None, fix: str) -> Corpus:
  """The corpus `run` was trained on, or `data_dir`'s train/valid/test files, checked to have its vocabulary.

  `fix` ends the error line: what the user should pass instead.
  """
  data_config = run.config.data
  if data_dir:
    data_config = data_config.copy_and_resolve_references()
    data_config.update(source="dir", dir=data_dir)
  corpus = load_corpus(data_config)
  if corpus.vocab != run.vocab:
    raise UserError(f"the data's vocabulary ({len(corpus.vocab):,} words) is not the checkpoint's "
                    f"({len(run.vocab):,} words); {fix}")
  return corpus
