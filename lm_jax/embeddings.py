"""A trained embedding matrix looked at: nearest neighbours by cosine, a labelled t-SNE map, and the
GloVe text export (which lm_jax/pretrained.py reads back exactly). lm-jax-embeddings is the command."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from typing import Sequence

import numpy as np

from lm_jax.errors import UserError

VIZ_EXTRA = "pip install -e '.[viz]'"


def nearest_neighbours(embedding_VxE: np.ndarray, word_id: int, k: int) -> list[tuple[int, float]]:
  """The k other rows most cosine-similar to row `word_id` (ties: the lower id first), with their cosines.
  In float64; a zero row is similar to nothing (cosine 0)."""
  rows_VxE = embedding_VxE.astype(np.float64)
  norms_V = np.linalg.norm(rows_VxE, axis=1)
  unit_VxE = rows_VxE / np.where(norms_V > 0, norms_V, 1.0)[:, None]
  cosine_V = unit_VxE @ unit_VxE[word_id]
  order = [i for i in np.argsort(-cosine_V, kind="stable") if i != word_id][:k]
  return [(int(i), float(cosine_V[i])) for i in order]


def map_words(order: str, count: int, train_ids: np.ndarray | None, vocab_size: int) -> np.ndarray:
  """Ids of the words to map: the `count` most frequent in `train_ids` (ties: first appearance first), or
  the first `count` of the vocabulary (its order is first appearance)."""
  if order == "first":
    return np.arange(count)
  frequency_V = np.bincount(train_ids, minlength=vocab_size)
  return np.argsort(-frequency_V, kind="stable")[:count]


@dataclasses.dataclass(frozen=True)
class TsneSettings:
  perplexity: float
  seed: int
  learning_rate: str = "auto"   # scikit-learn's: max(N / early_exaggeration / 4, 50)
  init: str = "pca"
  metric: str = "cosine"        # the neighbours' measure, so the map and the table agree

  def check(self, num_words: int) -> None:
    """scikit-learn needs perplexity < the number of points."""
    if not 0 < self.perplexity < num_words:
      raise UserError(f"--perplexity must be > 0 and below the number of words mapped ({num_words}), got "
                      f"{self.perplexity:g}; pass e.g. --perplexity={max(1, num_words // 4)}")


def require_viz() -> None:
  """The t-SNE map's optional dependencies (the `viz` extra), checked before any work."""
  missing = [name for name in ("sklearn", "matplotlib") if importlib.util.find_spec(name) is None]
  if missing:
    raise UserError(f"the t-SNE map needs scikit-learn and matplotlib ({', '.join(missing)} missing); {VIZ_EXTRA}")


def tsne_png(embedding_NxE: np.ndarray, labels: Sequence[str], settings: TsneSettings, title: str) -> tuple[bytes, str]:
  """A labelled 2-D t-SNE scatter of the rows as PNG bytes, and the settings used as one line."""
  require_viz()
  import matplotlib
  from sklearn.manifold import TSNE

  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt

  tsne = TSNE(n_components=2, perplexity=settings.perplexity, learning_rate=settings.learning_rate,
              init=settings.init, metric=settings.metric, random_state=settings.seed)
  points_Nx2 = tsne.fit_transform(embedding_NxE.astype(np.float64))
  used = (f"perplexity {settings.perplexity:g}, learning_rate {settings.learning_rate} "
          f"(= {float(tsne.learning_rate_):.4g}), init {settings.init}, metric {settings.metric}, "
          f"seed {settings.seed}, KL divergence {tsne.kl_divergence_:.3f}")
  side = max(6.0, len(labels) ** 0.5 * 1.6)
  figure, axes = plt.subplots(figsize=(side, side))
  axes.scatter(points_Nx2[:, 0], points_Nx2[:, 1], s=6, color="tab:blue")
  for (x, y), label in zip(points_Nx2, labels):
    axes.annotate(label, (x, y), fontsize=8, xytext=(2, 2), textcoords="offset points")
  axes.set_title(f"{title}\nt-SNE: {used}", fontsize=9)
  axes.set_xticks([])
  axes.set_yticks([])
  png = io.BytesIO()
  figure.savefig(png, format="png", dpi=100, bbox_inches="tight")
  plt.close(figure)
  return png.getvalue(), used


def glove_text(words: Sequence[str], embedding_VxE: np.ndarray) -> str:
  """GloVe's text format: `word v1 ... vD` per line, no header. Nine significant digits give back every
  float32 exactly."""
  return "".join(f"{word} {' '.join(format(v, '.9g') for v in row.tolist())}\n"
                 for word, row in zip(words, embedding_VxE.astype(np.float32)))
