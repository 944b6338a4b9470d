"""The published test accuracies (%) the report sets each measured row beside: ../shared/data/README.md's table
(the papers named per row) and the brief's IMDB figures (/work/shared/DESIGN.md, "Classification")."""

from __future__ import annotations

# row -> (source, {dataset: accuracy %}); MR is 10-fold cross-validation in every paper.
PUBLISHED: dict[str, tuple[str, dict[str, float]]] = {
    "NBSVM-bi": ("Wang & Manning 2012, Baselines and Bigrams: Simple, Good Sentiment and Topic Classification",
                 {"mr": 79.4, "imdb": 91.2}),
    "CNN-rand": ("Kim 2014, Convolutional Neural Networks for Sentence Classification, Table 2",
                 {"mr": 76.1, "sst2": 82.7, "sst1": 45.0, "trec": 91.2}),
    "CNN-non-static": ("Kim 2014, Table 2 (word2vec init)", {"mr": 81.5, "sst2": 87.2, "sst1": 48.0, "trec": 93.6}),
    "CNN-multichannel": ("Kim 2014, Table 2", {"mr": 81.1, "sst2": 88.1, "sst1": 47.4, "trec": 92.2}),
    "ULMFiT": ("Howard & Ruder 2018, Universal Language Model Fine-tuning for Text Classification",
               {"trec": 96.4, "imdb": 95.4}),
    "ULMFiT without pretraining": ("Howard & Ruder 2018, Table 4 (validation error, not test)",
                                   {"trec": 89.33, "imdb": 94.37}),
    "brief's ConvNet": ("the project brief's IMDB figures (batch 64, 30 epochs)", {"imdb": 51.0}),
    "brief's GRU": ("the project brief's IMDB figures", {"imdb": 50.0}),
    "brief's fastText": ("the project brief's IMDB figures", {"imdb": 85.9}),
}

# What each measured model is compared with: the published rows of the same method.
COMPARED_WITH: dict[str, tuple[str, ...]] = {
    "cnn": ("CNN-rand", "brief's ConvNet"),
    "gru": ("brief's GRU",),
    "cnn_rnn": (),
    "nbsvm": ("NBSVM-bi",),
    "fasttext": ("brief's fastText",),
    "ulmfit": ("ULMFiT",),
    "ulmfit_scratch": ("ULMFiT without pretraining",),
}


def published_marks(model: str, dataset: str) -> list[tuple[str, float]]:
  """(published row, accuracy %) for `model` on `dataset`, the rows COMPARED_WITH names that report it."""
  return [(row, PUBLISHED[row][1][dataset]) for row in COMPARED_WITH.get(model, ()) if dataset in PUBLISHED[row][1]]
