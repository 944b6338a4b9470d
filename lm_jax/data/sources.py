"""Where a corpus comes from: a local directory, the Hugging Face Hub, the embedded synthetic source, or
arrays of ids per article.

The text sources yield the three splits as lines of text; `load_corpus` tokenises them the one
reference way, so the vocabulary and ids do not depend on the source. The 'articles' source
(lm_jax/data/articles.py) hands over ids and the vocabulary as they are: the ids are the data.
"""

from __future__ import annotations

import dataclasses
import io
import os

import ml_collections
import numpy as np

from lm_jax.data import articles
from lm_jax.data.vocab import Vocabulary, tokenize
from lm_jax.errors import UserError

SPLITS = ("train", "valid", "test")

# Hub datasets by short name: (repository, configuration, revision, text column).
HUB_DATASETS = {
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-v1", None, "text"),
    "wikitext-103": ("Salesforce/wikitext", "wikitext-103-v1", None, "text"),
    # The PTB loading script no longer runs on current `datasets`; its parquet conversion does.
    "ptb": ("ptb-text-only/ptb_text_only", "penn_treebank", "refs/convert/parquet", "sentence"),
}
HUB_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class Corpus:
  vocab: Vocabulary
  ids: dict[str, np.ndarray]           # split -> int32 token ids
  floor: dict[str, float] | None = None  # split -> true-source cross-entropy (nats/token), synthetic only
  # Token offsets where the training split's articles start (the first is 0); None: the data has no articles.
  train_articles: np.ndarray | None = None


def read_directory(directory: str) -> dict[str, list[str]]:
  """train.txt, valid.txt, test.txt of a directory, as lines of UTF-8 text."""
  if not os.path.isdir(directory):
    raise UserError(f"data directory {directory!r} does not exist; set --config.data.dir to a "
                    "directory holding train.txt, valid.txt and test.txt")
  missing = [s for s in SPLITS if not os.path.isfile(os.path.join(directory, f"{s}.txt"))]
  if missing:
    raise UserError(f"data directory {directory!r} lacks {', '.join(f'{s}.txt' for s in missing)}; "
                    "it needs train.txt, valid.txt and test.txt")
  return {split: _read_text_lines(os.path.join(directory, f"{split}.txt")) for split in SPLITS}


def _read_text_lines(path: str) -> list[str]:
  with open(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise UserError(f"{path} is not UTF-8 text (bad byte at line {line}); convert it with "
                    f"`iconv -t utf-8` or fix that line") from None
  if not text.strip():
    raise UserError(f"{path} is empty; every split needs some text")
  # Lines as Python's text-mode file iteration yields them (universal newlines), like the reference.
  return list(io.StringIO(text, newline=None))


def read_hub(name: str) -> dict[str, list[str]]:
  """A Hub dataset by short name (see HUB_DATASETS) or a local `datasets` directory / repository id."""
  repo, config, revision, column = HUB_DATASETS.get(name, (name, None, None, "text"))
  try:
    import datasets  # Heavy: imported only when this source is used.
  except ImportError:
    raise UserError("the Hugging Face source needs `datasets`; `pip install datasets`, or use "
                    "--config.data.source=dir with --config.data.dir") from None
  try:
    loaded = datasets.load_dataset(repo, config, revision=revision)
  except Exception as e:  # The hub raises many types (offline, HTTP, missing repo); all mean the same here.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"could not load {name!r} from the Hugging Face Hub ({first_line[:200]}); "
                    "download the train/valid/test text files and use --config.data.source=dir "
                    "--config.data.dir=PATH") from None
  lines = {}
  for split in SPLITS:
    hub_split = HUB_SPLIT_NAMES[split]
    if hub_split not in loaded:
      raise UserError(f"dataset {name!r} has no {hub_split!r} split; use a dataset with "
                      "train, validation and test splits")
    if column not in loaded[hub_split].column_names:
      raise UserError(f"dataset {name!r} has no {column!r} column; use a dataset with a "
                      f"{column!r} text column")
    # Hub rows of wikitext keep their trailing newline; a row is a line of the original file.
    lines[split] = [row.rstrip("\n") for row in loaded[hub_split][column]]
  return lines


def read_synthetic(config: ml_collections.ConfigDict) -> tuple[dict[str, list[str]], dict[str, float]]:
  """The embedded synthetic corpus and its true-source cross-entropy per split."""
  from lm_jax.data.synthetic import generate_synthetic

  splits = generate_synthetic(seed=config.seed, vocab_size=config.vocab_size,
                              num_classes=config.num_classes, train_tokens=config.train_tokens,
                              valid_tokens=config.valid_tokens, test_tokens=config.test_tokens)
  return ({s: splits[s].lines for s in SPLITS}, {s: splits[s].cross_entropy for s in SPLITS})


def corpus_from_lines(lines: dict[str, list[str]], floor: dict[str, float] | None = None) -> Corpus:
  tokens = {split: tokenize(lines[split]) for split in SPLITS}
  vocab = Vocabulary.build(tokens[split] for split in SPLITS)
  return Corpus(vocab, {split: vocab.encode(tokens[split]) for split in SPLITS}, floor,
                articles.heading_starts(lines["train"]))


def read_articles(directory: str) -> Corpus:
  """The 'articles' source: each split's articles concatenated as given (no `<eos>` added), vocab.txt's words."""
  words, splits = articles.read_article_arrays(directory)
  starts = np.cumsum([0] + [len(a) for a in splits["train"][:-1]])
  return Corpus(Vocabulary(words), {split: np.concatenate(splits[split]) for split in SPLITS},
                train_articles=starts)


def load_corpus(data_config: ml_collections.ConfigDict, *, training: bool = False) -> Corpus:
  """The corpus named by `config.data`: source 'dir', 'hub', 'synthetic' or 'articles'. `training` also checks
  what training needs of it: articles, when they are to be shuffled (evaluation never shuffles)."""
  corpus = _load(data_config)
  if training and data_config.shuffle_articles and corpus.train_articles is None:
    raise UserError(f"config.data.shuffle_articles needs articles, and this data ({_describe(data_config)}) has "
                    "none: no ` = Title = ` heading lines as WikiText has; use data with articles (WikiText, or "
                    "--config.data.source=articles) or --config.data.shuffle_articles=false")
  return corpus


def _load(data_config: ml_collections.ConfigDict) -> Corpus:
  source = data_config.source
  if source == "dir":
    return corpus_from_lines(read_directory(data_config.dir))
  if source == "hub":
    return corpus_from_lines(read_hub(data_config.hub_name))
  if source == "synthetic":
    return corpus_from_lines(*read_synthetic(data_config.synthetic))
  if source == "articles":
    return read_articles(data_config.dir)
  raise UserError(f"unknown data source {source!r}; use 'dir', 'hub', 'synthetic' or 'articles'")


def _describe(data_config: ml_collections.ConfigDict) -> str:
  if data_config.source == "hub":
    return f"hub {data_config.hub_name!r}"
  return f"dir {data_config.dir!r}" if data_config.source == "dir" else data_config.source
