"""One document per file, a folder per class: the generic layout `PATH/<class>/*.txt` (or, with split folders,
`PATH/{train,dev,test}/<class>/*.txt`), and IMDB's aclImdb, read from its unpacked folder or straight from
aclImdb_v1.tar.gz, streamed member by member (nothing is unpacked to disk).

A folder and a tarball of it give the same corpus: documents are taken class by class (in class-id order), each
class's files in natural name order (`2_3.txt` before `10_1.txt`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import tarfile
from typing import Callable, Iterator

from lm_jax.classify.data.corpus import SPLITS, LabelledCorpus, labelled_corpus
from lm_jax.classify.data.files import decode
from lm_jax.errors import UserError

IMDB_TARBALL = "aclImdb_v1.tar.gz"
IMDB_FOLDERS = ("neg", "pos")
IMDB_CLASSES = ("negative", "positive")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)

# (split, class folder) -> [(file name, where the bytes came from (for error lines), raw bytes)]
Documents = dict[tuple[str, str], list[tuple[str, str, bytes]]]


def read_class_folders(path: str, classes: tuple[str, ...] | None = None, encoding: str = "utf-8") -> LabelledCorpus:
  """`path/<class>/*.txt` (one 'train' split) or `path/{train,dev,test}/<class>/*.txt`, or a .tar/.tar.gz of the
  latter. `classes`: the class folders to read, in id order (others are ignored); None: every class folder of
  train, in alphabetical order."""
  name = os.path.basename(os.path.normpath(path)).split(".")[0]
  return _corpus(f"folders:{name}", path, _collect(path, classes), classes, encoding, clean=lambda text: text)


def read_imdb(path: str, encoding: str = "utf-8") -> LabelledCorpus:
  """aclImdb_v1.tar.gz (streamed), or its unpacked `aclImdb` folder (or a folder holding either): train and test,
  `neg`/`pos` folders of `ID_RATING.txt` reviews (unsup/ is not read), with `<br />` tags replaced by spaces."""
  for inside in ("aclImdb", IMDB_TARBALL):  # the folder holding either: ../shared/data/imdb
    if os.path.isdir(path) and os.path.exists(os.path.join(path, inside)):
      path = os.path.join(path, inside)
      break
  documents = _collect(path, IMDB_FOLDERS)
  for split, folder in itertools.product(("train", "test"), IMDB_FOLDERS):
    if not documents.get((split, folder)):
      raise UserError(f"IMDB: {path!r} holds no {split}/{folder} reviews; set --config.data.path to "
                      "aclImdb_v1.tar.gz or the aclImdb folder it unpacks to")
  corpus = _corpus("imdb", path, documents, IMDB_FOLDERS, encoding, clean=strip_html_breaks)
  return dataclasses.replace(corpus, classes=IMDB_CLASSES)


def strip_html_breaks(text: str) -> str:
  """IMDB's `<br />` tags (any `<br>` form) as spaces."""
  return _HTML_BREAK.sub(" ", text)


def _collect(path: str, classes: tuple[str, ...] | None) -> Documents:
  if os.path.isfile(path):
    return _from_tarball(path, classes)
  if not os.path.isdir(path):
    raise UserError(f"{path!r} does not exist; set --config.data.path to a folder with a sub-folder of .txt files "
                    "per class (or per split, then per class), or a .tar.gz of one")
  split_layout = os.path.isdir(os.path.join(path, "train"))
  documents: Documents = {}
  for split in SPLITS if split_layout else ("train",):
    split_dir = os.path.join(path, split) if split_layout else path
    if not os.path.isdir(split_dir):
      continue
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
      if entry.is_dir() and not entry.name.startswith(".") and (classes is None or entry.name in classes):
        files = [f for f in os.scandir(entry.path) if f.is_file() and f.name.endswith(".txt")]
        documents[(split, entry.name)] = [(f.name, f.path, _read_bytes(f.path)) for f in files]
  return documents


def _from_tarball(path: str, classes: tuple[str, ...] | None) -> Documents:
  """The .txt members at `[...]/SPLIT/CLASS/NAME.txt`, read in one forward pass over the compressed stream."""
  documents: Documents = {}
  try:
    with tarfile.open(path, "r|*") as archive:
      for member in archive:
        parts = member.name.split("/")
        if not (member.isfile() and len(parts) >= 3 and parts[-1].endswith(".txt")):
          continue
        split, label, name = parts[-3:]
        if split in SPLITS and (classes is None or label in classes):
          raw = archive.extractfile(member).read()
          documents.setdefault((split, label), []).append((name, f"{path}:{member.name}", raw))
  except (tarfile.TarError, EOFError, OSError) as e:
    raise UserError(f"cannot read {path} as a tar archive ({e}); set --config.data.path to a .tar/.tar.gz of "
                    "SPLIT/CLASS/*.txt files, or to an unpacked folder") from None
  if not documents:
    raise UserError(f"{path} holds no SPLIT/CLASS/*.txt files (SPLIT: train, dev, test); set "
                    "--config.data.path to an archive of that layout, or to an unpacked folder")
  return documents


def _corpus(name: str, path: str, documents: Documents, classes: tuple[str, ...] | None, encoding: str,
            clean: Callable[[str], str]) -> LabelledCorpus:
  if classes is None:
    classes = tuple(sorted(label for split, label in documents if split == "train"))
  if not classes:
    raise UserError(f"{path!r} has no class folders with .txt files; set --config.data.path to a folder holding "
                    "a sub-folder of .txt files per class")
  splits = sorted({split for split, _ in documents}, key=SPLITS.index)
  if "train" not in splits:
    raise UserError(f"{path!r} has no train/ documents; put the training documents under train/CLASS/")
  examples = {}
  for split in splits:
    texts, labels, where = [], [], []
    for label in _labels_of(documents, split, classes, path):
      for _, origin, raw in sorted(documents[(split, label)], key=lambda doc: _natural(doc[0])):
        texts.append(clean(decode(raw, encoding, origin)))
        labels.append(label)
        where.append(origin)
    examples[split] = (texts, labels, where)
  return labelled_corpus(name, examples, classes, "")


def _labels_of(documents: Documents, split: str, classes: tuple[str, ...], path: str) -> Iterator[str]:
  """The split's class folders in id order. A UserError: a folder that is not a class (classes found, not
  declared), an empty class folder, a class missing from train (dev and test may lack one, as TREC's test does)."""
  for split_name, label in documents:
    if split_name == split and label not in classes:
      raise UserError(f"{path!r}: {split}/{label} is not a class of train ({', '.join(classes)}); remove it, or "
                      "declare the classes to read with --config.data.classes")
  for label in classes:
    if (split, label) in documents or split == "train":
      if not documents.get((split, label)):
        raise UserError(f"{path!r}: class {label!r} has no .txt documents in {split}; add them (a folder "
                        f"{split}/{label}/ of .txt files), or leave the class out of --config.data.classes")
      yield label


def _natural(name: str) -> list:
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()
