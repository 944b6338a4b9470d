"""Classification corpora (lm_jax/classify/data): each reader on small files generated in its format, their one-line
errors; and, where ../shared/data is present, the real corpora's counts (its README). The text handling, folds,
batches and the synthetic corpus: tests/test_classify_pipeline.py."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from lm_jax.classify.data import config as data
from lm_jax.classify.data.documents import read_class_folders, read_imdb
from lm_jax.classify.data.hub import read_hub
from lm_jax.classify.data.readers import read_mr, read_sst, read_sst2, read_table, read_trec
from lm_jax.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data from the repo root


def one_line_error(call, *args, **kwargs) -> str:
  with pytest.raises(UserError) as error:
    call(*args, **kwargs)
  assert "\n" not in str(error.value)
  return str(error.value)


def texts_labels(corpus, split="train"):
  return corpus.splits[split].texts, corpus.splits[split].labels_N.tolist()


# --- MR, SST, SST-2, TREC ------------------------------------------------------------------------------------------


def write_mr(folder: Path, pos: bytes, neg: bytes) -> str:
  (folder / "rt-polarity.pos").write_bytes(pos)
  (folder / "rt-polarity.neg").write_bytes(neg)
  return str(folder)


def test_mr_reads_cp1252_splitting_lines_on_newline_only_and_dropping_crlf(tmp_path):
  path = write_mr(tmp_path, b"a film \x85 truly fine\r\nwarm and \x93funny\x94\n", b"dull\n\n  \ntedious \x96 long")
  corpus = read_mr(path)
  assert corpus.name == "mr" and corpus.classes == ("negative", "positive") and list(corpus.splits) == ["train"]
  assert texts_labels(corpus) == (["dull", "tedious \u2013 long", "a film \u2026 truly fine",
                                   "warm and \u201cfunny\u201d"], [0, 0, 1, 1])
  # Read as latin-1, 0x85 is U+0085, a line break to str.splitlines(): still one line here.
  texts, _ = texts_labels(read_mr(path, encoding="latin-1"))
  assert texts[2] == "a film \x85 truly fine"


def test_mr_missing_file_empty_class_and_bad_bytes_are_one_line_each(tmp_path):
  (tmp_path / "rt-polarity.pos").write_bytes(b"good\n")
  assert one_line_error(read_mr, str(tmp_path)) == (
      f"MR: {str(tmp_path)!r} has no rt-polarity.neg; set --config.data.path to the folder holding "
      "rt-polarity.neg, rt-polarity.pos")
  write_mr(tmp_path, b"good\n", b"\n \n")
  assert one_line_error(read_mr, str(tmp_path)) == (
      f"MR: {tmp_path / 'rt-polarity.neg'} holds no sentences (class 'negative' is empty); use the rt-polarity "
      "release's files")
  write_mr(tmp_path, b"good\nfine \x81 here\n", b"bad\n")  # 0x81: no character in cp1252
  assert one_line_error(read_mr, str(tmp_path)) == (
      f"{tmp_path / 'rt-polarity.pos'} line 2 is not cp1252 text (byte 0x81); set --config.data.encoding to the "
      "file's encoding (latin-1 reads any byte)")
  write_mr(tmp_path, b"good\n", b"bad\n\xe9 utf-8 it is not\n")
  assert "rt-polarity.neg line 2 is not utf-8 text (byte 0xe9)" in one_line_error(read_mr, str(tmp_path), "utf-8")


def test_sst_reads_binary_and_fine_label_lines_and_refuses_an_undeclared_label(tmp_path):
  for split, lines in (("train", "1 a fine film\n0 dull\n"), ("dev", "0 flat\n"), ("test", "1 warm\n")):
    (tmp_path / f"stsa.binary.{split}").write_text(lines)
  (tmp_path / "stsa.fine.train").write_text("4 superb\r\n0 awful\r\n2 so-so\r\n")
  (tmp_path / "stsa.fine.test").write_text("3 good\n")
  binary = read_sst(str(tmp_path))
  assert binary.name == "sst-binary" and binary.classes == ("negative", "positive")
  assert {s: texts_labels(binary, s) for s in binary.splits} == {
      "train": (["a fine film", "dull"], [1, 0]), "dev": (["flat"], [0]), "test": (["warm"], [1])}
  fine = read_sst(str(tmp_path), fine=True)
  assert fine.classes == ("very negative", "negative", "neutral", "positive", "very positive")
  assert list(fine.splits) == ["train", "test"] and texts_labels(fine) == (["superb", "awful", "so-so"], [4, 0, 2])
  (tmp_path / "stsa.binary.dev").write_text("0 flat\n3 good\n")
  assert one_line_error(read_sst, str(tmp_path)) == (
      f"{tmp_path / 'stsa.binary.dev'} line 2: label '3' is not one of the classes (0, 1); fix the line, or read "
      "the 5-class files with --config.data.fine=true")
  (tmp_path / "stsa.binary.test").unlink()
  assert "has no stsa.binary.test" in one_line_error(read_sst, str(tmp_path))


def write_sst2(folder: Path, header: bytes = b"sentence\tlabel\r\n") -> str:
  (folder / "train.tsv").write_bytes(header + b'"quoted" gem\t1\r\nnot , good\t0\r\n')
  (folder / "dev.tsv").write_bytes(header + b"meh\t0\r\n")
  (folder / "test.tsv").write_bytes(header + b"caf\xc3\xa9 charm\t1\r\n")
  return str(folder)


def test_sst2_reads_glue_tsv_with_its_header_crlf_and_unquoted_fields(tmp_path):
  corpus = read_sst2(write_sst2(tmp_path))
  assert corpus.name == "sst2" and corpus.classes == ("negative", "positive")
  assert {s: texts_labels(corpus, s) for s in corpus.splits} == {
      "train": (['"quoted" gem', "not , good"], [1, 0]), "dev": (["meh"], [0]), "test": (["caf\u00e9 charm"], [1])}


def test_a_table_without_the_named_column_is_one_line(tmp_path):
  write_sst2(tmp_path, header=b"sentence\tpolarity\n")
  assert one_line_error(read_sst2, str(tmp_path)) == (
      f"{tmp_path / 'train.tsv'} has no column 'label' (its header: sentence, polarity); set "
      "--config.data.label_column to one of them (or --config.data.delimiter if the header is not split)")


def test_trec_reads_coarse_and_fine_labels_and_its_latin1_byte(tmp_path):
  (tmp_path / "TREC.train").write_bytes(b"LOC:city What sister\xf0city has Paris ?\nHUM:ind Who wrote it ?\n"
                                        b"NUM:date When was it ?\n")
  (tmp_path / "TREC.test").write_bytes(b"HUM:gr What team won ?\n")
  coarse = read_trec(str(tmp_path))
  assert coarse.classes == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
  assert texts_labels(coarse) == (["What sister\u00f0city has Paris ?", "Who wrote it ?", "When was it ?"],
                                  [4, 3, 5])
  fine = read_trec(str(tmp_path), fine=True)
  assert len(fine.classes) == 50 and len(set(fine.classes)) == 50
  assert [fine.classes[i] for i in fine.splits["train"].labels_N] == ["LOC:city", "HUM:ind", "NUM:date"]
  assert [fine.classes[i] for i in fine.splits["test"].labels_N] == ["HUM:gr"]
  (tmp_path / "TREC.test").write_bytes(b"HUM:gr ok ?\nQTY:big How much ?\n")
  assert one_line_error(read_trec, str(tmp_path)).startswith(
      f"{tmp_path / 'TREC.test'} line 2: label 'QTY' is not one of the classes (ABBR, DESC, ENTY, HUM, LOC, NUM)")
  assert "label 'QTY:big' is not one of the classes (ABBR:abb, ABBR:exp" in one_line_error(read_trec, str(tmp_path),
                                                                                           fine=True)


# --- IMDB, class folders, CSV ----------------------------------------------------------------------------------------


def write_imdb(root: Path) -> Path:
  reviews = {"train/pos/10_9.txt": "Great.<br /><br />Loved it", "train/pos/2_8.txt": "Fine <br/>film",
             "train/neg/0_1.txt": "Awful", "test/pos/1_10.txt": "Superb", "test/neg/3_2.txt": "Bad<BR>bad",
             "train/unsup/5_0.txt": "unlabelled", "train/urls_pos.txt": "http://x"}
  for name, text in reviews.items():
    (root / "aclImdb" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "aclImdb" / name).write_text(text)
  (root / "aclImdb" / "imdb.vocab").write_text("the\n")
  return root / "aclImdb"


def test_imdb_from_its_tarball_and_its_folder_is_the_same_corpus_with_br_tags_gone(tmp_path):
  folder = write_imdb(tmp_path)
  tarball = tmp_path / "aclImdb_v1.tar.gz"
  with tarfile.open(tarball, "w:gz") as archive:
    archive.add(folder, arcname="aclImdb")
  from_tar, from_folder, from_parent = read_imdb(str(tarball)), read_imdb(str(folder)), read_imdb(str(tmp_path))
  assert from_tar.classes == ("negative", "positive") and list(from_tar.splits) == ["train", "test"]
  # Class by class, files in natural order (2_8 before 10_9); unsup/ and urls_pos.txt are not reviews.
  assert texts_labels(from_tar) == (["Awful", "Fine  film", "Great.  Loved it"], [0, 1, 1])
  assert texts_labels(from_tar, "test") == (["Bad bad", "Superb"], [0, 1])
  for other in (from_folder, from_parent):
    assert {s: texts_labels(other, s) for s in other.splits} == {s: texts_labels(from_tar, s) for s in from_tar.splits}


def test_imdb_without_a_split_or_with_an_empty_class_is_one_line(tmp_path):
  folder = write_imdb(tmp_path)
  for review in (folder / "test" / "neg").iterdir():
    review.unlink()
  assert one_line_error(read_imdb, str(folder)) == (
      f"IMDB: {str(folder)!r} holds no test/neg reviews; set --config.data.path to aclImdb_v1.tar.gz or the "
      "aclImdb folder it unpacks to")
  tarball = tmp_path / "train_only.tar.gz"
  with tarfile.open(tarball, "w:gz") as archive:
    archive.add(folder / "train", arcname="aclImdb/train")
  assert "holds no test/neg reviews" in one_line_error(read_imdb, str(tarball))


def test_class_folders_flat_or_split_found_or_declared(tmp_path):
  for name, text in {"flat/sport/a.txt": "goal", "flat/politics/b.txt": "vote", "flat/politics/c.txt": "poll",
                     "split/train/x/1.txt": "x one", "split/train/y/1.txt": "y one", "split/test/y/2.txt": "y two",
                     "split/test/x/2.txt": "x two", "split/test/z/3.txt": "z",
                     "flat/.ipynb_checkpoints/a.txt": "a hidden folder is no class"}.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  flat = read_class_folders(str(tmp_path / "flat"))
  assert flat.classes == ("politics", "sport") and texts_labels(flat) == (["vote", "poll", "goal"], [0, 0, 1])
  declared = read_class_folders(str(tmp_path / "flat"), classes=("sport", "politics"))
  assert declared.classes == ("sport", "politics") and texts_labels(declared) == (["goal", "vote", "poll"], [0, 1, 1])
  assert one_line_error(read_class_folders, str(tmp_path / "split")) == (
      f"{str(tmp_path / 'split')!r}: test/z is not a class of train (x, y); remove it, or declare the classes to "
      "read with --config.data.classes")
  split = read_class_folders(str(tmp_path / "split"), classes=("x", "y"))  # declared: z is not read
  assert texts_labels(split, "test") == (["x two", "y two"], [0, 1])
  (tmp_path / "split" / "test" / "x" / "2.txt").unlink()
  assert one_line_error(read_class_folders, str(tmp_path / "split"), classes=("x", "y")) == (
      f"{str(tmp_path / 'split')!r}: class 'x' has no .txt documents in test; add them (a folder test/x/ of .txt "
      "files), or leave the class out of --config.data.classes")
  (tmp_path / "split" / "test" / "x").rmdir()  # a test split may lack a class (TREC's does), not hold an empty one
  assert texts_labels(read_class_folders(str(tmp_path / "split"), classes=("x", "y")), "test") == (["y two"], [1])
  (tmp_path / "flat" / "sport" / "a.txt").unlink()
  assert "class 'sport' has no .txt documents in train" in one_line_error(read_class_folders, str(tmp_path / "flat"))


def test_csv_reads_named_columns_and_refuses_an_unknown_label(tmp_path):
  (tmp_path / "train.csv").write_text('id,label,text\n1,spam,"win, now"\n2,ham,hello\n\n3,spam,"say ""hi"""\n')
  (tmp_path / "test.csv").write_text("id,label,text\n4,ham,bye\n")
  corpus = read_table(str(tmp_path))
  assert corpus.classes == ("ham", "spam")
  assert texts_labels(corpus) == (["win, now", "hello", 'say "hi"'], [1, 0, 1])
  assert texts_labels(corpus, "test") == (["bye"], [0])
  single = read_table(str(tmp_path / "train.csv"), classes=("spam", "ham", "eggs"))
  assert list(single.splits) == ["train"] and single.classes == ("spam", "ham", "eggs")
  (tmp_path / "test.csv").write_text("id,label,text\n4,eggs,bye\n")
  assert one_line_error(read_table, str(tmp_path)) == (
      f"{tmp_path / 'test.csv'} line 2: label 'eggs' is not one of the classes (ham, spam); every dev/test label "
      "must occur in the training split")
  assert "label 'ham' is not one of the classes (spam, eggs); fix the label" in one_line_error(
      read_table, str(tmp_path), classes=("spam", "eggs"))
  semicolons = tmp_path / "semi.txt"
  semicolons.write_text("words;tag\nhi there;1\n")
  assert texts_labels(read_table(str(semicolons), "words", "tag", ";")) == (["hi there"], [0])
  assert "has no column 'text' (its header: words;tag)" in one_line_error(read_table, str(semicolons))


# --- The Hugging Face source, on local files ---------------------------------------------------------------------


def test_hub_source_reads_a_local_parquet_dataset_with_class_names(tmp_path, monkeypatch):
  datasets = pytest.importorskip("datasets")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
  features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
  rows = {"train": (["good one", "bad one"], [1, 0]), "validation": (["ok"], [1]), "test": (["hidden"], [-1]),
          "unsupervised": (["no label"], [-1])}
  for split, (texts, labels) in rows.items():
    datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features).to_parquet(
        str(tmp_path / "local" / f"{split}-00000-of-00001.parquet"))
  corpus = read_hub(str(tmp_path / "local"))
  assert corpus.classes == ("neg", "pos") and list(corpus.splits) == ["train", "dev"]  # test: all labels hidden
  assert texts_labels(corpus) == (["good one", "bad one"], [1, 0]) and texts_labels(corpus, "dev") == (["ok"], [1])
  assert one_line_error(read_hub, str(tmp_path / "local"), label_column="stars").startswith(
      f"dataset {str(tmp_path / 'local')!r} has no 'stars' column in 'train' (it has text, label)")


@pytest.mark.parametrize("name, fine, call, columns, expected", [
    ("imdb", False, ("stanfordnlp/imdb", None, None), ("text", "label"),
     (("negative", "positive"), ["a b"], [1])),
    ("sst2", False, ("stanfordnlp/sst2", None, None), ("sentence", "label"),
     (("negative", "positive"), ["a<br />b"], [1])),
    ("trec", True, ("CogComp/trec", None, "refs/convert/parquet"), ("text", "fine_label"),
     (("c0", "c1"), ["a<br />b"], [1])),
])
def test_hub_short_names_load_their_repository_and_read_their_columns(monkeypatch, name, fine, call, columns, expected):
  datasets = pytest.importorskip("datasets")
  calls = []
  features = datasets.Features({columns[0]: datasets.Value("string"), "other": datasets.Value("string"),
                                columns[1]: datasets.ClassLabel(names=["c0", "c1"])})

  def load_dataset(path, config=None, revision=None):
    calls.append((path, config, revision))
    rows = {columns[0]: ["a<br />b"], columns[1]: [1], "other": ["x"]}
    split = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict({"train": split, "test": split})

  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  corpus = read_hub(name, fine=fine)
  assert calls == [call]
  assert (corpus.classes, *texts_labels(corpus, "test")) == expected
  if not fine:
    assert one_line_error(read_hub, name, fine=True) == (
        f"config.data.fine: dataset {name!r} has no fine labels; only 'trec' has them")


# --- The real corpora (../shared/data), where present ----------------------------------------------------------------


@pytest.mark.parametrize("source, fine, counts, num_classes", [
    ("mr", False, {"train": 10662}, 2),
    ("sst", False, {"train": 6920, "dev": 872, "test": 1821}, 2),
    ("sst", True, {"train": 8544, "dev": 1101, "test": 2210}, 5),
    ("sst2", False, {"train": 67349, "dev": 872, "test": 1821}, 2),
    ("trec", False, {"train": 5452, "test": 500}, 6),
    ("trec", True, {"train": 5452, "test": 500}, 50),
    ("imdb", False, {"train": 25000, "test": 25000}, 2),
])
def test_real_corpus_counts(source, fine, counts, num_classes):
  if not (SHARED_DATA / source).is_dir():
    pytest.skip(f"{SHARED_DATA / source} is absent (the corpora are not part of the repository)")
  start = time.perf_counter()
  corpus = data.load_corpus(data.data_config(source=source, path=str(SHARED_DATA / source), fine=fine))
  print(f"{source}{' fine' if fine else ''}: read in {time.perf_counter() - start:.2f} s")
  assert {split: len(s) for split, s in corpus.splits.items()} == counts
  assert len(corpus.classes) == num_classes == len(np.unique(corpus.splits["train"].labels_N))
  if source in ("mr", "imdb"):  # balanced: 5,331 + 5,331; 12,500 + 12,500 per split
    for split in corpus.splits.values():
      assert np.bincount(split.labels_N).tolist() == [len(split) // 2] * 2
