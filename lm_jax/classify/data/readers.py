"""Readers of the line and table formats (../shared/data/README.md): MR, SST, SST-2 (GLUE TSV), TREC, and a
generic CSV/TSV file or folder. Each is a pure function of its paths and options returning a LabelledCorpus with
the texts as the files hold them (no cleaning: lm_jax/classify/data/text.py does that, the same for every source).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

from lm_jax.classify.data.corpus import SPLITS, LabelledCorpus, labelled_corpus
from lm_jax.classify.data.files import numbered_lines, read_text, require_files
from lm_jax.errors import UserError

MR_FILES = {"negative": "rt-polarity.neg", "positive": "rt-polarity.pos"}
SST_CLASSES = {False: ("negative", "positive"),
               True: ("very negative", "negative", "neutral", "positive", "very positive")}
TREC_COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
# Li & Roth's 50 fine classes, as TREC.train holds them.
TREC_FINE = tuple(f"{coarse}:{fine}" for coarse, fines in (
    ("ABBR", "abb exp"), ("DESC", "def desc manner reason"),
    ("ENTY", "animal body color cremat currency dismed event food instru lang letter other plant product religion "
             "sport substance symbol techmeth termeq veh word"),
    ("HUM", "desc gr ind title"), ("LOC", "city country mount other state"),
    ("NUM", "code count date dist money ord other perc period speed temp volsize weight")) for fine in fines.split())

Examples = dict[str, tuple[list[str], list[str], list[str]]]  # split -> (texts, labels, where each is)


def read_mr(directory: str, encoding: str = "cp1252") -> LabelledCorpus:
  """rt-polarity.neg and .pos: one sentence per line, one class per file; one 'train' split (no official split)."""
  require_files(directory, list(MR_FILES.values()), "MR")
  texts, labels, where = [], [], []
  for label, name in MR_FILES.items():
    path = os.path.join(directory, name)
    lines = numbered_lines(path, encoding)
    if not lines:
      raise UserError(f"MR: {path} holds no sentences (class {label!r} is empty); use the rt-polarity release's "
                      "files")
    texts += [line for _, line in lines]
    labels += [label] * len(lines)
    where += [f"{path} line {number}" for number, _ in lines]
  return labelled_corpus("mr", {"train": (texts, labels, where)}, tuple(MR_FILES), "fix the files")


def read_sst(directory: str, fine: bool = False, encoding: str = "utf-8") -> LabelledCorpus:
  """stsa.binary.* (labels 0, 1) or stsa.fine.* (0..4): `LABEL sentence` lines; train and test, dev if there."""
  kind = "fine" if fine else "binary"
  files = {split: f"stsa.{kind}.{split}" for split in SPLITS}
  require_files(directory, [files["train"], files["test"]], f"SST ({kind})")
  examples: Examples = {}
  for split, name in files.items():
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      rows = [(number, *_split_first(line)) for number, line in numbered_lines(path, encoding)]
      examples[split] = ([text for _, _, text in rows], [label for _, label, _ in rows],
                         [f"{path} line {number}" for number, _, _ in rows])
  labels = tuple(str(i) for i in range(len(SST_CLASSES[fine])))
  fix = ("fix the line" if fine else
         "fix the line, or read the 5-class files with --config.data.fine=true")
  return _named(labelled_corpus(f"sst-{kind}", examples, labels, fix), SST_CLASSES[fine])


def read_trec(directory: str, fine: bool = False, encoding: str = "latin-1") -> LabelledCorpus:
  """TREC.train, TREC.test: `COARSE:fine question` lines; the 6 coarse or the 50 fine classes."""
  require_files(directory, ["TREC.train", "TREC.test"], "TREC")
  examples: Examples = {}
  for split in ("train", "test"):
    path = os.path.join(directory, f"TREC.{split}")
    texts, labels, where = [], [], []
    for number, line in numbered_lines(path, encoding):
      label, text = _split_first(line)
      if ":" not in label:
        raise UserError(f"{path} line {number}: {label!r} is not a COARSE:fine label; fix the line")
      texts.append(text)
      labels.append(label if fine else label.split(":", 1)[0])
      where.append(f"{path} line {number}")
    examples[split] = (texts, labels, where)
  return labelled_corpus(f"trec-{'fine' if fine else 'coarse'}", examples, TREC_FINE if fine else TREC_COARSE,
                         "fix the line")


def read_sst2(directory: str, encoding: str = "utf-8") -> LabelledCorpus:
  """GLUE's SST-2: train.tsv, dev.tsv, test.tsv with a `sentence<TAB>label` header; labels 0, 1."""
  require_files(directory, ["train.tsv", "test.tsv"], "SST-2")
  corpus = read_table(directory, text_column="sentence", label_column="label", delimiter="\t", classes=("0", "1"),
                      encoding=encoding)
  return dataclasses.replace(_named(corpus, SST_CLASSES[False]), name="sst2")


def read_table(path: str, text_column: str = "text", label_column: str = "label", delimiter: str = "",
               classes: tuple[str, ...] | None = None, encoding: str = "utf-8") -> LabelledCorpus:
  """A CSV/TSV file with a header (its one 'train' split), or a folder of train.{csv,tsv} (required),
  dev.*, test.*. `delimiter` '': by extension (.tsv: tab, else ','). TSV fields are never quoted (GLUE's
  convention: a `"` is text); CSV fields follow the csv module's quoting. `classes`: the declared label set in
  id order; None: the training file's labels."""
  files = _table_files(path)
  examples: Examples = {}
  for split, file in files.items():
    examples[split] = _read_table_file(file, text_column, label_column, _delimiter(file, delimiter), encoding)
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  return labelled_corpus(f"csv:{name}", examples, classes,
                         "fix the label, or declare every label with --config.data.classes")


def _table_files(path: str) -> dict[str, str]:
  if os.path.isfile(path):
    return {"train": path}
  if not os.path.isdir(path):
    raise UserError(f"{path!r} does not exist; set --config.data.path to a CSV/TSV file, or to a folder of "
                    "train.csv (or .tsv) with dev and test beside it")
  files = {}
  for split in SPLITS:
    found = [os.path.join(path, f"{split}{ext}") for ext in (".tsv", ".csv")
             if os.path.isfile(os.path.join(path, f"{split}{ext}"))]
    if found:
      files[split] = found[0]
  if "train" not in files:
    raise UserError(f"{path!r} has no train.tsv or train.csv; set --config.data.path to a CSV/TSV file, or to a "
                    "folder holding train.csv (or .tsv)")
  return files


def _delimiter(file: str, option: str) -> str:
  if option in ("tab", "\\t"):
    return "\t"
  return option or ("\t" if file.lower().endswith(".tsv") else ",")


def _read_table_file(file: str, text_column: str, label_column: str, delimiter: str, encoding: str):
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  rows = csv.reader(io.StringIO(read_text(file, encoding), newline=""), delimiter=delimiter, quoting=quoting)
  header = next(rows, None)
  if header is None:
    raise UserError(f"{file} is empty; it needs a header line naming its columns, then one example per line")
  for option, column in (("text_column", text_column), ("label_column", label_column)):
    if column not in header:
      raise UserError(f"{file} has no column {column!r} (its header: {', '.join(header)}); set "
                      f"--config.data.{option} to one of them (or --config.data.delimiter if the header is "
                      "not split)")
  text_at, label_at = header.index(text_column), header.index(label_column)
  texts, labels, where = [], [], []
  for row in rows:
    if not any(field.strip() for field in row):
      continue  # a blank line
    if len(row) != len(header):
      raise UserError(f"{file} line {rows.line_num} has {len(row)} fields where the header has {len(header)}; "
                      "fix the line (or --config.data.delimiter)")
    if not row[label_at].strip():
      raise UserError(f"{file} line {rows.line_num} has an empty {label_column!r}; give every example a label")
    texts.append(row[text_at])
    labels.append(row[label_at].strip())
    where.append(f"{file} line {rows.line_num}")
  if not texts:
    raise UserError(f"{file} holds a header but no examples; add one example per line")
  return texts, labels, where


def _split_first(line: str) -> tuple[str, str]:
  """`LABEL text` -> (LABEL, text)."""
  label, _, text = line.strip().partition(" ")
  return label, text


def _named(corpus: LabelledCorpus, names: tuple[str, ...]) -> LabelledCorpus:
  return dataclasses.replace(corpus, classes=names)
