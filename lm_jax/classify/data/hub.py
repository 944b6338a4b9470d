"""Labelled corpora from the Hugging Face Hub through `datasets` (as lm_jax/data/sources.py's 'hub' source does
for language modelling): a short name (HUB_DATASETS), or any Hub id or local `datasets` folder (parquet, csv,
json files named by split) with a text and a label column.

Splits: 'train', 'validation' (read as 'dev') and 'test'; others (IMDB's 'unsupervised') are not read. A split
whose labels are all -1 is unlabelled (GLUE hides SST-2's test labels) and is left out; a -1 among real labels
is refused. Class names: the label column's ClassLabel names when it has them, else its values (the training
split's, in natural order).
"""

from __future__ import annotations

import dataclasses

from lm_jax.classify.data.corpus import LabelledCorpus, labelled_corpus
from lm_jax.classify.data.documents import IMDB_CLASSES, strip_html_breaks
from lm_jax.errors import UserError

HUB_SPLIT_NAMES = {"train": "train", "validation": "dev", "test": "test"}
UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class HubDataset:
  repository: str
  configuration: str | None
  revision: str | None
  text_column: str
  label_column: str
  fine_label_column: str | None = None   # with config.data.fine
  class_names: tuple[str, ...] | None = None  # renames the ClassLabel names
  strip_html_breaks: bool = False


HUB_DATASETS = {
    "imdb": HubDataset("stanfordnlp/imdb", None, None, "text", "label", class_names=IMDB_CLASSES,
                       strip_html_breaks=True),
    "sst2": HubDataset("stanfordnlp/sst2", None, None, "sentence", "label", class_names=("negative", "positive")),
    # Its loading script no longer runs on current `datasets`; its parquet conversion does.
    "trec": HubDataset("CogComp/trec", None, "refs/convert/parquet", "text", "coarse_label", "fine_label"),
}


def read_hub(name: str, text_column: str = "text", label_column: str = "label", fine: bool = False
             ) -> LabelledCorpus:
  """The dataset by short name (HUB_DATASETS), or a Hub id / local folder read with the given columns."""
  spec = HUB_DATASETS.get(name, HubDataset(name, None, None, text_column, label_column))
  if fine and spec.fine_label_column is None:
    raise UserError(f"config.data.fine: dataset {name!r} has no fine labels; only 'trec' has them")
  label_column = spec.fine_label_column if fine else spec.label_column
  loaded = _load(name, spec)
  examples, classes = {}, None
  for hub_split, split in HUB_SPLIT_NAMES.items():
    if hub_split not in loaded:
      continue
    rows = loaded[hub_split]
    for column in (spec.text_column, label_column):
      if column not in rows.column_names:
        raise UserError(f"dataset {name!r} has no {column!r} column in {hub_split!r} (it has "
                        f"{', '.join(rows.column_names)}); set --config.data.text_column / label_column to its "
                        "columns")
    names = getattr(rows.features[label_column], "names", None)
    classes = tuple(names) if names else classes
    labels = list(rows[label_column])
    if all(label == UNLABELLED for label in labels):
      continue
    if UNLABELLED in labels:
      raise UserError(f"dataset {name!r}: {hub_split!r} has unlabelled rows (label -1) among labelled ones; "
                      "use a dataset with every example labelled")
    texts = list(rows[spec.text_column])
    if spec.strip_html_breaks:
      texts = [strip_html_breaks(text) for text in texts]
    labels = [names[label] if names else str(label) for label in labels]
    examples[split] = (texts, labels, [f"dataset {name!r} {hub_split!r} row {i}" for i in range(len(texts))])
  if "train" not in examples:
    raise UserError(f"dataset {name!r} has no labelled 'train' split (it has {', '.join(loaded)}); use a dataset "
                    "with one")
  corpus = labelled_corpus(f"hub:{name}", examples, classes,
                           "use the dataset's ClassLabel names, or a dataset whose labels are all declared")
  return dataclasses.replace(corpus, classes=spec.class_names) if spec.class_names else corpus


def _load(name: str, spec: HubDataset):
  try:
    import datasets  # Heavy: imported only when this source is used.
  except ImportError:
    raise UserError("the Hugging Face source needs `datasets`; `pip install datasets`, or read the files with "
                    "another --config.data.source") from None
  try:
    return datasets.load_dataset(spec.repository, spec.configuration, revision=spec.revision)
  except Exception as e:  # The hub raises many types (offline, HTTP, missing repo); all mean the same here.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"could not load {name!r} from the Hugging Face Hub ({first_line[:200]}); download the files "
                    "and read them with --config.data.source=imdb, sst2, trec, csv or folders") from None
