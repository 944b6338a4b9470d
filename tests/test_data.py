"""Data functions against hand-computed examples (DESIGN.md's a..z example) and the sources' errors."""

from __future__ import annotations

import string

import numpy as np
import pytest

from lm_jax.data import batching
from lm_jax.data.sources import corpus_from_lines, read_directory, read_hub
from lm_jax.data.vocab import EOS, Vocabulary, tokenize
from lm_jax.errors import UserError

LETTERS = np.arange(26, dtype=np.int32)  # a..z as ids 0..25


def letters(ids) -> str:
  return "".join(string.ascii_lowercase[i] for i in np.ravel(ids))


def test_tokenize_appends_eos_per_line_and_splits_on_any_whitespace():
  assert tokenize(["a  b\tc", "", "d\n"]) == ["a", "b", "c", EOS, EOS, "d", EOS]


def test_vocabulary_orders_words_by_first_appearance_over_train_valid_test():
  corpus = corpus_from_lines({"train": ["b a", "a c"], "valid": ["d b"], "test": ["e a"]})
  assert corpus.vocab.words == ("b", "a", EOS, "c", "d", "e")
  np.testing.assert_array_equal(corpus.ids["valid"], [4, 0, 2])
  assert corpus.ids["train"].dtype == np.int32


def test_vocabulary_round_trips_through_json_and_rejects_unknown_words():
  vocab = Vocabulary(["x", "<unk>", EOS])
  assert Vocabulary.from_json(vocab.to_json()) == vocab
  ids, unknown = vocab.encode_with_unk(["x", "zz", "x"])
  assert ids.tolist() == [0, 1, 0] and unknown == ["zz"]
  with pytest.raises(UserError, match="'zz' is not in the vocabulary"):
    vocab.encode(["zz"])


def test_batchify_matches_the_design_example():
  data_TxB = batching.batchify(LETTERS, 4)
  assert data_TxB.shape == (6, 4)
  assert [letters(data_TxB[:, j]) for j in range(4)] == ["abcdef", "ghijkl", "mnopqr", "stuvwx"]  # y, z dropped


def test_windows_match_the_design_example():
  data_TxB = batching.batchify(LETTERS, 4)
  windows = batching.window_bounds(data_TxB.shape[0], bptt=2)
  assert windows == [(0, 2), (2, 2), (4, 1)]  # the last window is cut to rows - 1 - start
  split = batching.put_on_device(LETTERS, 4, max_len=2)
  window = batching.window_at(split.padded_TxB, 0, 2, 2)
  assert [letters(row) for row in np.asarray(window.inputs_TxB)] == ["agms", "bhnt"]
  assert [letters(row) for row in np.asarray(window.targets_TxB)] == ["bhnt", "ciou"]
  np.testing.assert_array_equal(window.valid_T, [True, True])
  window = batching.window_at(split.padded_TxB, 4, 1, 2)
  assert letters(np.asarray(window.inputs_TxB)[0]) == "ekqw" and letters(np.asarray(window.targets_TxB)[0]) == "flrx"
  np.testing.assert_array_equal(window.valid_T, [True, False])


def test_windows_cover_every_target_exactly_once():
  rows, bptt = 103, 35
  covered = [t for start, length in batching.window_bounds(rows, bptt) for t in range(start + 1, start + 1 + length)]
  assert covered == list(range(1, rows))


def test_split_too_short_for_the_batch_is_a_user_error():
  with pytest.raises(UserError, match="valid split has 5 tokens, too few for batch size 10"):
    batching.put_on_device(np.arange(5, dtype=np.int32), 10, 4, "valid")


def write_splits(directory, texts: dict[str, bytes]) -> None:
  for split, text in texts.items():
    (directory / f"{split}.txt").write_bytes(text)


def test_directory_source_reads_three_splits_as_the_reference_does(tmp_path):
  write_splits(tmp_path, {"train": b"a b\r\nc\n\nd", "valid": b"a\n", "test": b"b c\n"})
  lines = read_directory(str(tmp_path))
  assert tokenize(lines["train"]) == ["a", "b", EOS, "c", EOS, EOS, "d", EOS]


@pytest.mark.parametrize("texts, message", [
    ({"train": b"a\n", "valid": b"a\n"}, "lacks test.txt"),
    ({"train": b"a\n", "valid": b"  \n\n", "test": b"a\n"}, "valid.txt is empty"),
    ({"train": b"a\n\xff\xfe b\n", "valid": b"a\n", "test": b"a\n"}, "train.txt is not UTF-8 text .bad byte at line 2"),
])
def test_directory_source_errors_name_the_problem(tmp_path, texts, message):
  write_splits(tmp_path, texts)
  with pytest.raises(UserError, match=message):
    read_directory(str(tmp_path))


def test_missing_directory_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    read_directory(str(tmp_path / "nope"))


def test_hub_source_reads_a_local_parquet_dataset(tmp_path, monkeypatch):
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
  data_dir = tmp_path / "wikitext_like"
  data_dir.mkdir()
  rows = {"train": ["", " = A = \n", " x y \n"], "validation": [" y \n"], "test": [" x \n"]}
  for split, texts in rows.items():
    pq.write_table(pa.table({"text": texts}), data_dir / f"{split}-00000-of-00001.parquet")
  lines = read_hub(str(data_dir))
  corpus = corpus_from_lines(lines)
  assert corpus.vocab.words == (EOS, "=", "A", "x", "y")  # an empty row is a line: just <eos>
  assert corpus.ids["train"].tolist() == [0, 1, 2, 1, 0, 3, 4, 0]


@pytest.mark.parametrize("name, repository, configuration, revision, column", [
    ("wikitext-2", "Salesforce/wikitext", "wikitext-2-v1", None, "text"),
    ("wikitext-103", "Salesforce/wikitext", "wikitext-103-v1", None, "text"),
    ("ptb", "ptb-text-only/ptb_text_only", "penn_treebank", "refs/convert/parquet", "sentence"),
])
def test_hub_short_names_load_their_repository_and_read_their_column(monkeypatch, name, repository, configuration,
                                                                     revision, column):
  datasets = pytest.importorskip("datasets")
  calls = []

  def load_dataset(path, config=None, revision=None):
    calls.append((path, config, revision))
    rows = {column: [" a b \n"], "other": ["never read"]}
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(rows) for split in ("train", "validation", "test")})

  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  lines = read_hub(name)
  assert calls == [(repository, configuration, revision)]
  assert lines == {"train": [" a b "], "valid": [" a b "], "test": [" a b "]}


@pytest.mark.parametrize("splits, columns, message", [
    (("train", "test"), ("text",), "dataset 'local' has no 'validation' split; use a dataset with train, validation "
                                   "and test splits"),
    (("train", "validation", "test"), ("sentence",), "dataset 'local' has no 'text' column; use a dataset with a "
                                                     "'text' text column"),
])
def test_hub_missing_split_or_column_is_one_line(monkeypatch, splits, columns, message):
  datasets = pytest.importorskip("datasets")
  rows = {column: [" a "] for column in columns}
  monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.DatasetDict(
      {split: datasets.Dataset.from_dict(rows) for split in splits}))
  with pytest.raises(UserError) as error:
    read_hub("local")
  assert str(error.value) == message
