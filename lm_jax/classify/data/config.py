"""The classification task's `config.data` group: every field a reader, the text handling and the splits need,
its checks, and `load_corpus`, which reads the corpus it names."""

from __future__ import annotations

import codecs
import dataclasses

import ml_collections
from ml_collections import config_dict

from lm_jax.classify.data import documents, hub, readers, synthetic
from lm_jax.classify.data.corpus import LabelledCorpus, declared_classes, require_every_class
from lm_jax.errors import UserError

# source -> the encoding its files are in when config.data.encoding is ''
DEFAULT_ENCODINGS = {"mr": "cp1252", "trec": "latin-1"}
FILE_SOURCES = ("mr", "sst", "sst2", "trec", "imdb", "folders", "csv")
SOURCES = FILE_SOURCES + ("hub", "synthetic")
FINE_SOURCES = ("sst", "trec", "hub")


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The group with its defaults, then `overrides` (field=value; `synthetic` takes a dict of its fields). Locked: a
  field it lacks cannot be set."""
  c = ml_collections.ConfigDict(dict(
      # 'mr', 'sst', 'sst2', 'trec', 'imdb' (their files as ../shared/data/README.md describes them); 'folders'
      # (PATH/<class>/*.txt, or PATH/{train,dev,test}/<class>/*.txt, or a .tar.gz of that); 'csv' (a CSV/TSV file
      # with a header, or a folder of train/dev/test .csv or .tsv); 'hub' (Hugging Face); 'synthetic'.
      source="synthetic",
      path="",            # the corpus's folder (mr, sst, sst2, trec, folders), file or folder (imdb, csv)
      fine=False,         # sst: the 5-class files; trec, hub 'trec': the 50 fine classes
      hub_name="",        # 'imdb', 'sst2', 'trec', or a Hub id / local `datasets` folder
      text_column="text",    # csv, hub (a name other than the short ones): the columns to read
      label_column="label",
      delimiter="",       # csv: '' by the extension (.tsv: tab, else ','); 'tab' or any one character
      classes="",         # csv, folders: the declared labels 'neg,pos' (id order; others refused); '': found
      encoding="",        # '': the format's own (mr cp1252, trec latin-1, else utf-8)
      synthetic=ml_collections.ConfigDict(dict(
          **dataclasses.asdict(synthetic.SyntheticSource()), train_size=4000, dev_size=500, test_size=2000)),
      clean=True,         # Kim's clean_str rules (lm_jax/classify/data/text.py)
      lowercase=config_dict.placeholder(bool),  # None: True, except for TREC (Kim's choice)
      min_count=1,        # words seen fewer times in the training split are <unk>
      max_len=400,        # tokens kept per example (the rest cut, with a note); the longest bucket length
      folds=config_dict.placeholder(int),  # k-fold cross-validation; 0: the corpus's test split; None: 10 without one
      dev_fraction=0.1,   # held out of train (stratified) where the corpus has no dev split, as Kim
      split_seed=0,       # the folds' and dev hold-outs' draws
  ))
  c.lock()  # a misspelt field is an error, not a new field
  for field, value in overrides.items():
    if field == "synthetic":
      c.synthetic.update(value)
    else:
      c[field] = value
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises a UserError naming the bad field and the fix."""

  def need(ok: bool, problem: str, fix: str) -> None:
    if not ok:
      raise UserError(f"config.data.{problem}; {fix}")

  need(c.source in SOURCES, f"source {c.source!r} is not one", f"use one of {', '.join(SOURCES)}")
  need(c.source not in FILE_SOURCES or bool(c.path), f"path is empty, and source {c.source!r} reads files",
       "pass --config.data.path=DIR (e.g. ../shared/data/mr)")
  need(c.source != "hub" or bool(c.hub_name), "hub_name is empty", "pass --config.data.hub_name=imdb (or sst2, trec)")
  need(not c.fine or c.source in FINE_SOURCES, f"fine applies to sst, trec and hub 'trec', not {c.source!r}",
       "drop --config.data.fine")
  if c.encoding:
    try:
      codecs.lookup(c.encoding)
    except LookupError:
      need(False, f"encoding {c.encoding!r} is not a known codec", "pass e.g. utf-8, cp1252 or latin-1")
  need(c.delimiter in ("", "tab", "\\t") or len(c.delimiter) == 1, f"delimiter {c.delimiter!r} is not one character",
       "pass ',', ';', 'tab' or '' (by the file's extension)")
  declared_classes(c.classes)
  need(c.min_count >= 1, f"min_count must be >= 1 (got {c.min_count})", "pass --config.data.min_count=1")
  need(c.max_len >= 1, f"max_len must be >= 1 (got {c.max_len})", "pass e.g. --config.data.max_len=400")
  need(c.folds is None or c.folds == 0 or c.folds >= 2, f"folds must be 0 or >= 2 (got {c.folds})",
       "pass --config.data.folds=10 (or 0 for the corpus's own test split)")
  need(0 < c.dev_fraction < 1, f"dev_fraction must be in (0, 1) (got {c.dev_fraction})",
       "pass --config.data.dev_fraction=0.1")
  if c.source == "synthetic":
    _synthetic_source(c).validate()


def load_corpus(c: ml_collections.ConfigDict) -> LabelledCorpus:
  """The corpus `config.data` names (validated first); every class must have training examples."""
  validate(c)
  encoding = c.encoding or DEFAULT_ENCODINGS.get(c.source, "utf-8")
  classes = declared_classes(c.classes)
  if c.source == "mr":
    corpus = readers.read_mr(c.path, encoding)
  elif c.source == "sst":
    corpus = readers.read_sst(c.path, c.fine, encoding)
  elif c.source == "sst2":
    corpus = readers.read_sst2(c.path, encoding)
  elif c.source == "trec":
    corpus = readers.read_trec(c.path, c.fine, encoding)
  elif c.source == "imdb":
    corpus = documents.read_imdb(c.path, encoding)
  elif c.source == "folders":
    corpus = documents.read_class_folders(c.path, classes, encoding)
  elif c.source == "csv":
    corpus = readers.read_table(c.path, c.text_column, c.label_column, c.delimiter, classes, encoding)
  elif c.source == "hub":
    corpus = hub.read_hub(c.hub_name, c.text_column, c.label_column, c.fine)
  else:
    sizes = {split: c.synthetic[f"{split}_size"] for split in synthetic.SPLITS}
    corpus = synthetic.synthetic_corpus(_synthetic_source(c), sizes)
  require_every_class(corpus, corpus.name)
  return corpus


def lowercase_of(c: ml_collections.ConfigDict) -> bool:
  """config.data.lowercase, or where it is unset: off for TREC (its capitals mark names), on for the rest."""
  if c.lowercase is not None:
    return c.lowercase
  return not (c.source == "trec" or (c.source == "hub" and c.hub_name == "trec"))


def _synthetic_source(c: ml_collections.ConfigDict) -> synthetic.SyntheticSource:
  fields = {f.name for f in dataclasses.fields(synthetic.SyntheticSource)}
  return synthetic.SyntheticSource(**{name: c.synthetic[name] for name in fields})
