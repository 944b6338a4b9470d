"""lm-jax-embeddings: look at a trained model's word embeddings (its best checkpoint's input embedding matrix).

  lm-jax-embeddings --workdir=runs/wt2 --neighbours=king,river [--k=10]
  lm-jax-embeddings --workdir=runs/wt2 --tsne=tsne.png [--words=100 --order=frequent --perplexity=30 --seed=0]
  lm-jax-embeddings --workdir=runs/wt2 --export=wt2-vectors.txt

--neighbours prints each word's nearest words by cosine similarity. --tsne draws the --words most frequent
words of the training split (--order=first: the first in the vocabulary), labelled, with scikit-learn's
t-SNE (pip install -e '.[viz]'), and prints its settings. --export writes every word's vector in GloVe's
text format, which --config.model.pretrained_embeddings reads.
"""

from __future__ import annotations


import numpy as np
from absl import flags

from lm_jax import embeddings
from lm_jax.cli.common import require_output_folder, run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_NEIGHBOURS = flags.DEFINE_list("neighbours", [], "Words whose nearest neighbours (cosine) to print, comma-separated.")
_K = flags.DEFINE_integer("k", 10, "Neighbours per word.")
_TSNE = flags.DEFINE_string("tsne", None, "Write a labelled t-SNE map of --words words to this PNG file.")
_WORDS = flags.DEFINE_integer("words", 100, "Words on the t-SNE map.")
_ORDER = flags.DEFINE_enum("order", "frequent", ["frequent", "first"], "Which words to map: the most frequent in "
                           "the training split (it is loaded), or the first in the vocabulary (first appearance).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "With --order=frequent: count words in this directory's train.txt "
                                "instead of the run's training data.")
_PERPLEXITY = flags.DEFINE_float("perplexity", 30.0, "t-SNE perplexity (scikit-learn's default); below --words.")
_SEED = flags.DEFINE_integer("seed", 0, "t-SNE random seed.")
_EXPORT = flags.DEFINE_string("export", None, "Write every word's vector to this file in GloVe's text format.")


def main(argv: list[str]) -> None:
  # Every flag is checked before anything is loaded.
  if not (_NEIGHBOURS.value or _TSNE.value or _EXPORT.value):
    raise UserError("nothing to do; pass --neighbours=WORD,..., --tsne=PATH.png or --export=PATH.txt")
  if _K.value <= 0:
    raise UserError(f"--k must be > 0 (got {_K.value}); pass e.g. --k=10")
  for flag, path in (("tsne", _TSNE.value), ("export", _EXPORT.value)):
    if path:
      require_output_folder(flag, path)
  tsne = embeddings.TsneSettings(perplexity=_PERPLEXITY.value, seed=_SEED.value)
  if _TSNE.value:
    embeddings.require_viz()
    if _WORDS.value < 2:
      raise UserError(f"--words must be >= 2 for a map (got {_WORDS.value}); pass e.g. --words=100")
    tsne.check(_WORDS.value)
  from lm_jax import trained
  from lm_jax.workdir import write_atomically

  run = trained.load(_WORKDIR.value)
  embedding_VxE = np.asarray(run.params[run.model.embedding_param])
  vocab_size = len(run.vocab)
  unknown = [word for word in _NEIGHBOURS.value if word not in run.vocab.index]
  if unknown:
    raise UserError(f"{', '.join(map(repr, unknown))} not in the vocabulary of {_WORKDIR.value} ({vocab_size:,} "
                    "words); pass words the model knows")
  if _TSNE.value and _WORDS.value > vocab_size:
    raise UserError(f"--words {_WORDS.value} exceeds the vocabulary ({vocab_size:,} words); pass "
                    f"--words={vocab_size} or fewer")

  for word in _NEIGHBOURS.value:
    print(f"| nearest to {word!r} by cosine similarity")
    for rank, (i, cosine) in enumerate(embeddings.nearest_neighbours(embedding_VxE, run.vocab.index[word], _K.value), 1):
      print(f"| {rank:3d}  {run.vocab.words[i]:<20s} {cosine:7.4f}")
  if _TSNE.value:
    train_ids = None
    if _ORDER.value == "frequent":  # counted on the run's training split, or --data_dir's
      train_ids = trained.corpus_of(run, _DATA_DIR.value, "pass the data the model was trained on with --data_dir, "
                                    "or --order=first").ids["train"]
    ids = embeddings.map_words(_ORDER.value, _WORDS.value, train_ids, vocab_size)
    which = "most frequent" if _ORDER.value == "frequent" else "first"
    png, used = embeddings.tsne_png(embedding_VxE[ids], run.vocab.decode(ids), tsne,
                                    f"{_WORKDIR.value}: the {len(ids)} {which} words")
    write_atomically(_TSNE.value, png)
    print(f"| wrote a t-SNE map of the {len(ids)} {which} words to {_TSNE.value} | {used}")
  if _EXPORT.value:
    write_atomically(_EXPORT.value, embeddings.glove_text(run.vocab.words, embedding_VxE))
    print(f"| wrote {vocab_size:,} vectors of {embedding_VxE.shape[1]} values to {_EXPORT.value} (GloVe text format)")


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
