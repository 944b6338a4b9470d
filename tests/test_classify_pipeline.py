"""Classification data from corpus to batches (lm_jax/classify/data): the config group, Kim's clean_str, the
vocabulary, CV folds and dev hold-outs, bucketed batches, and the synthetic corpus's exact Bayes accuracy."""

from __future__ import annotations

import itertools
import math
import random
import re

import numpy as np
import pytest

from lm_jax.classify.data import config as data
from lm_jax.classify.data.batching import bucket_lengths, bucketed_batches
from lm_jax.classify.data.prepare import encode_fold
from lm_jax.classify.data.splits import evaluation_folds, hold_out_dev, stratified_folds
from lm_jax.classify.data.synthetic import SyntheticSource, bayes_accuracy, bayes_predictions, sample_split
from lm_jax.classify.data.text import build_vocabulary, clean_str, encode, tokenize
from tests.test_classify_data import one_line_error, write_mr, write_sst2


# --- Text: clean_str, the vocabulary, ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("It's a \"great\" film, isn't it?(yes)", "It 's a great film , is n't it ? ( yes )"),
    ("We've\tgot café's ... you'll/they're!", "We 've got caf 's you 'll they 're !"),
    ("I'd `quote' 123 -- don't", "I 'd `quote' 123 do n't"),
    ("  ", ""),
])
def test_clean_str_follows_kims_rules(text, expected):
  assert clean_str(text) == expected


def kims_rules_one_by_one(text: str) -> str:
  """process_data.py's clean_str as Kim lists it (with plain '(' ')' '?' replacements), without lower()."""
  for pattern, replacement in ((r"[^A-Za-z0-9(),!?\'\`]", " "), (r"\'s", " 's"), (r"\'ve", " 've"),
                               (r"n\'t", " n't"), (r"\'re", " 're"), (r"\'d", " 'd"), (r"\'ll", " 'll"),
                               (r",", " , "), (r"!", " ! "), (r"\(", " ( "), (r"\)", " ) "), (r"\?", " ? "),
                               (r"\s{2,}", " ")):
    text = re.sub(pattern, replacement, text)
  return text.strip()


def test_clean_str_matches_kims_rules_applied_one_by_one_on_random_text():
  rng = random.Random(0)
  alphabet = "nst'vedrlN(),!?`a \t.\u00e9-"
  for _ in range(3000):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(16)))
    assert clean_str(text) == kims_rules_one_by_one(text), text


def test_tokenize_lowercases_after_the_rules_as_an_option():
  assert tokenize("Don't STOP", clean=True, lowercase=True) == ["do", "n't", "stop"]
  assert tokenize("DON'T stop", clean=True, lowercase=True) == ["don't", "stop"]  # the rules see "N'T": not split
  assert tokenize("What is ASCII ?", clean=True, lowercase=False) == ["What", "is", "ASCII", "?"]
  assert tokenize("a,b  C", clean=False, lowercase=False) == ["a,b", "C"]


def test_vocabulary_is_pad_unk_then_frequent_first_from_train_and_encode_cuts():
  token_lists = [["b", "a", "b"], ["c", "a", "d"], ["b", "<pad>"]]
  assert build_vocabulary(token_lists, min_count=2).words == ("<pad>", "<unk>", "b", "a")
  vocab = build_vocabulary(token_lists)
  assert vocab.words == ("<pad>", "<unk>", "b", "a", "c", "d")  # c before d: ties in order of first appearance
  ids, num_cut = encode([["a", "zz", "<pad>", "b"], ["d"], []], vocab, max_len=3)
  assert [x.tolist() for x in ids] == [[3, 1, 1], [5], []] and num_cut == 1
  assert all(x.dtype == np.int32 for x in ids)


# --- Folds and dev hold-outs ----------------------------------------------------------------------------------------


LABELS = np.random.default_rng(3).permutation([0] * 23 + [1] * 7 + [2] * 11)


def test_stratified_folds_are_disjoint_balanced_and_test_every_example_once():
  folds = stratified_folds(LABELS, 5, seed=7)
  tests = np.concatenate([test for _, test in folds])
  assert sorted(tests.tolist()) == list(range(len(LABELS)))
  for train, test in folds:
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(LABELS)))
  per_class_FxC = np.array([np.bincount(LABELS[test], minlength=3) for _, test in folds])
  assert (per_class_FxC.max(axis=0) - per_class_FxC.min(axis=0) <= 1).all()
  sizes = [len(test) for _, test in folds]
  assert max(sizes) - min(sizes) <= 1
  same = stratified_folds(LABELS, 5, seed=7)
  assert all((a[1] == b[1]).all() for a, b in zip(folds, same))
  assert any((a[1] != b[1]).any() for a, b in zip(folds, stratified_folds(LABELS, 5, seed=8)))
  assert one_line_error(stratified_folds, LABELS, 8, seed=0) == (
      "8-fold cross-validation needs at least 8 examples of every class, and class 1 has 7; pass "
      "--config.data.folds=7 or fewer")


def test_hold_out_dev_takes_a_stratified_fraction():
  train, dev = hold_out_dev(LABELS, 0.1, seed=1)
  assert np.bincount(LABELS[dev]).tolist() == [2, 1, 1]  # round(0.1 * (23, 7, 11))
  assert sorted(np.concatenate([train, dev]).tolist()) == list(range(len(LABELS)))
  assert (hold_out_dev(LABELS, 0.1, seed=1)[1] == dev).all()


def test_evaluation_folds_use_the_corpus_splits_or_cross_validate(tmp_path):
  path = write_mr(tmp_path, b"".join(b"good %d\n" % i for i in range(20)), b"".join(b"bad %d\n" % i for i in range(30)))
  c = data.data_config(source="mr", path=path)
  corpus = data.load_corpus(c)
  folds = evaluation_folds(corpus, c)  # MR: no test split, so 10 folds by default
  assert [f.name for f in folds] == [f"fold {i}/10" for i in range(1, 11)]
  assert sorted(t for f in folds for t in f.test.texts) == sorted(corpus.splits["train"].texts)
  for fold in folds:
    assert len(fold.test) == 5 and len(fold.dev) == 5 and len(fold.train) == 40  # dev: round(0.1 * (27, 18))
    assert not set(fold.train.texts) & set(fold.dev.texts) and not set(fold.train.texts) & set(fold.test.texts)
  c.folds = 0
  assert one_line_error(evaluation_folds, corpus, c) == (
      "corpus 'mr' has no test split; pass --config.data.folds=10 for 10-fold cross-validation")
  sst2 = data.data_config(source="sst2", path=write_sst2(tmp_path))
  (fold,) = evaluation_folds(data.load_corpus(sst2), sst2)
  assert (fold.name, fold.dev.texts, fold.test.texts) == ("test", ["meh"], ["caf\u00e9 charm"])
  sst2.folds = 10
  assert "has its own test split" in one_line_error(evaluation_folds, data.load_corpus(sst2), sst2)


def test_encode_fold_builds_the_vocabulary_from_train_only():
  c = data.data_config(synthetic=dict(train_size=40, dev_size=10, test_size=10))
  (fold,) = evaluation_folds(data.load_corpus(c), c)
  encoded = encode_fold(fold, c)
  train_words = {w for text in fold.train.texts for w in text.split()}
  assert set(encoded.vocab.words[2:]) == train_words
  assert [len(x) for x in encoded.splits["test"].ids] == [len(t.split()) for t in fold.test.texts]


# --- Bucketed batches -----------------------------------------------------------------------------------------------


def test_bucket_lengths_are_powers_of_two_then_max_len():
  assert bucket_lengths(100) == (8, 16, 32, 64, 100)
  assert bucket_lengths(400) == (8, 16, 32, 64, 128, 256, 400)
  assert bucket_lengths(8) == (8,) and bucket_lengths(5) == (5,) and bucket_lengths(9) == (8, 9)


LENGTHS = [3, 20, 7, 9, 1, 30, 16, 17, 0, 8]


def example_ids():
  return [np.arange(10 * i + 1, 10 * i + 1 + n, dtype=np.int32) for i, n in enumerate(LENGTHS)]


def check_batch(batch, ids, labels_N, buckets):
  real = batch.index_B >= 0
  assert batch.tokens_BxT.dtype == np.int32 and batch.labels_B.dtype == np.int32
  assert batch.weight_B.dtype == np.float32 and batch.mask_BxT.dtype == bool
  assert batch.weight_B.tolist() == real.astype(float).tolist()
  longest = max(len(ids[i]) for i in batch.index_B[real])
  assert batch.tokens_BxT.shape[1] == min(b for b in buckets if b >= longest)
  for row, example in enumerate(batch.index_B):
    n = len(ids[example]) if example >= 0 else 0
    expected = np.zeros(batch.tokens_BxT.shape[1], np.int32)
    expected[:n] = ids[example] if example >= 0 else []
    assert batch.tokens_BxT[row].tolist() == expected.tolist()
    assert batch.mask_BxT[row].tolist() == [t < n for t in range(batch.tokens_BxT.shape[1])]
    assert batch.labels_B[row] == (labels_N[example] if example >= 0 else 0)


def test_evaluation_batches_in_order_with_leftovers_moved_up_and_one_padded_batch():
  ids, labels_N = example_ids(), np.arange(10, dtype=np.int32) % 3
  buckets = (8, 16, 32)
  batches = list(bucketed_batches(ids, labels_N, 3, buckets))
  # Bucket 8 holds 0, 2, 4, 8, 9 (lengths 3 7 1 0 8); 16: 3, 6; 32: 1, 5, 7. Leftovers 8, 9 move up to 16.
  assert [b.index_B.tolist() for b in batches] == [[0, 2, 4], [8, 9, 3], [6, 1, 5], [7, -1, -1]]
  assert [b.tokens_BxT.shape for b in batches] == [(3, 8), (3, 16), (3, 32), (3, 32)]
  for batch in batches:
    check_batch(batch, ids, labels_N, buckets)


def test_training_batches_are_shuffled_from_the_rng_and_hold_every_example_once():
  ids, labels_N = example_ids(), np.arange(10, dtype=np.int32) % 3
  buckets = (8, 16, 32)

  def epoch(seed):
    return list(bucketed_batches(ids, labels_N, 4, buckets, np.random.default_rng(seed)))

  batches = epoch(0)
  assert sorted(i for b in batches for i in b.index_B.tolist() if i >= 0) == list(range(10))
  assert sum(b.weight_B.sum() for b in batches) == 10 and sum((b.weight_B == 0).any() for b in batches) == 1
  assert {b.tokens_BxT.shape for b in batches} <= {(4, t) for t in buckets}
  for batch in batches:
    check_batch(batch, ids, labels_N, buckets)
  assert [b.index_B.tolist() for b in epoch(0)] == [b.index_B.tolist() for b in batches]
  orders = {tuple(i for b in epoch(seed) for i in b.index_B.tolist()) for seed in range(5)}
  assert len(orders) > 1
  assert len({epoch(seed)[0].tokens_BxT.shape[1] for seed in range(10)}) > 1  # batches in random order, not by bucket


# --- The synthetic corpus -------------------------------------------------------------------------------------------


def test_bayes_accuracy_equals_brute_force_enumeration_of_every_document():
  """Sum over every document x of max_y P(y) P(x | y), the Bayes accuracy's definition, on a source small enough
  to list all of them."""
  source = SyntheticSource(num_classes=3, noise_words=2, signal_words=2, signal_prob=0.4, own_class_prob=0.7,
                           min_words=1, max_words=3)
  probs_CxV = source.word_probs_CxV()
  np.testing.assert_allclose(probs_CxV.sum(axis=1), 1.0, rtol=1e-15)
  lengths = range(source.min_words, source.max_words + 1)
  total = sum(max(np.prod(probs_CxV[y, list(words)]) for y in range(3)) / 3 / len(lengths)
              for n in lengths for words in itertools.product(range(probs_CxV.shape[1]), repeat=n))
  assert bayes_accuracy(source) == pytest.approx(total, rel=1e-12)


def test_the_bayes_rule_attains_the_stated_accuracy_on_a_large_sample():
  source = SyntheticSource()
  exact = bayes_accuracy(source)
  assert exact == pytest.approx(0.8715301921320779, rel=1e-12)  # the default's value (docs/classification.md)
  sample = sample_split(source, 20_000, stream=5)
  achieved = float(np.mean(bayes_predictions(source, sample.texts) == sample.labels_N))
  assert abs(achieved - exact) < 4 * math.sqrt(exact * (1 - exact) / 20_000)  # a binomial 4-sigma interval


def test_synthetic_corpus_through_the_config_is_seeded_and_carries_its_bayes_accuracy():
  c = data.data_config(synthetic=dict(train_size=50, dev_size=20, test_size=30, seed=3))
  corpus = data.load_corpus(c)
  assert {s: len(split) for s, split in corpus.splits.items()} == {"train": 50, "dev": 20, "test": 30}
  assert corpus.bayes_accuracy == {s: bayes_accuracy(SyntheticSource(seed=3)) for s in ("train", "dev", "test")}
  again = data.load_corpus(c)
  assert corpus.splits["test"].texts == again.splits["test"].texts
  c.synthetic.own_class_prob = 0.2
  assert one_line_error(data.load_corpus, c).startswith("config.data.synthetic.own_class_prob must be in "
                                                        "(1/num_classes, 1] (got 0.2)")


# --- The config group ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (dict(source="wiki"), "config.data.source 'wiki' is not one; use one of mr, sst, sst2, trec, imdb, folders, csv, "
                          "hub, synthetic"),
    (dict(source="mr"), "config.data.path is empty, and source 'mr' reads files; pass --config.data.path=DIR (e.g. "
                        "../shared/data/mr)"),
    (dict(source="mr", path="x", fine=True), "config.data.fine applies to sst, trec and hub 'trec', not 'mr'; drop "
                                             "--config.data.fine"),
    (dict(folds=1), "config.data.folds must be 0 or >= 2 (got 1); pass --config.data.folds=10 (or 0 for the "
                    "corpus's own test split)"),
    (dict(encoding="klingon"), "config.data.encoding 'klingon' is not a known codec; pass e.g. utf-8, cp1252 or "
                               "latin-1"),
    (dict(dev_fraction=0.0), "config.data.dev_fraction must be in (0, 1) (got 0.0); pass "
                             "--config.data.dev_fraction=0.1"),
])
def test_validate_names_the_bad_field(overrides, message):
  assert one_line_error(data.validate, data.data_config(**overrides)) == message


def test_defaults_lowercase_but_trec_and_a_declared_class_must_have_training_examples(tmp_path):
  assert data.lowercase_of(data.data_config(source="mr")) is True
  assert data.lowercase_of(data.data_config(source="trec")) is False
  assert data.lowercase_of(data.data_config(source="hub", hub_name="trec")) is False
  assert data.lowercase_of(data.data_config(source="trec", lowercase=True)) is True
  with pytest.raises(KeyError, match="sourc"):  # the group is locked: a misspelt field is no new field
    data.data_config(sourc="mr")
  (tmp_path / "t.csv").write_text("text,label\nhi,a\n")
  c = data.data_config(source="csv", path=str(tmp_path / "t.csv"), classes="a,b")
  assert one_line_error(data.load_corpus, c) == (
      "csv:t: class 'b' has no training examples; give it examples or leave it out of the classes")
