"""Articles: WikiText's headings split the training split, an epoch's shuffle moves whole articles, the
'articles' (.npy) source round-trips and rejects bad input in one line, and shuffled training resumes exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lm_jax import checkpoints, optim, parallel
from lm_jax.data.articles import heading_starts, shuffled_articles
from lm_jax.data.sources import corpus_from_lines, load_corpus
from lm_jax.errors import UserError
from lm_jax.models.registry import model_from_config
from lm_jax.runner import Preempted
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config

WIKITEXT_LIKE = [
    " \n",
    " = Alpha = \n",
    " \n",
    " a b c \n",
    " = = Early life = = \n",    # a section: stays inside Alpha
    " d e \n",
    " = = = Deeper = = = \n",
    " = Beta Gamma = \n",
    " f = g \n",                  # an `=` inside a line is text
    " = Delta = \n",
    " h \n",
]


def test_top_level_headings_start_articles_and_subheadings_stay_inside():
  corpus = corpus_from_lines({"train": WIKITEXT_LIKE, "valid": ["a\n"], "test": ["a\n"]})
  starts = corpus.train_articles
  # Token offsets: every line is its words and one <eos>; the leading blank line belongs to the first article.
  assert starts.tolist() == [0, 28, 37]
  words = corpus.vocab.decode(corpus.ids["train"])
  articles = [words[a:b] for a, b in zip(starts, [*starts[1:], len(words)])]
  assert [" ".join(a) for a in articles] == [
      "<eos> = Alpha = <eos> <eos> a b c <eos> = = Early life = = <eos> d e <eos> = = = Deeper = = = <eos>",
      "= Beta Gamma = <eos> f = g <eos>",
      "= Delta = <eos> h <eos>"]


def test_text_without_top_level_headings_has_no_articles():
  assert heading_starts([" = = Section = = \n", "a b\n", "c = d\n"]) is None


def test_shuffling_without_articles_is_a_clear_error_before_anything_is_written(tmp_path):
  c = tiny_config(**{"data.shuffle_articles": True})
  with pytest.raises(UserError, match=r"shuffle_articles needs articles, and this data \(synthetic\) has none"):
    train_and_evaluate(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  assert load_corpus(c.data).train_articles is None  # evaluation never shuffles: no error there


def test_a_shuffled_epoch_is_a_permutation_of_whole_articles():
  lengths = [int(n) for n in np.random.default_rng(0).integers(1, 9, size=40)]
  ids = np.arange(sum(lengths), dtype=np.int32)  # every token distinct: where it lands says where it came from
  starts = np.cumsum([0] + lengths[:-1])
  articles = np.split(ids, starts[1:])

  def order(seed: int, epoch: int) -> list[int]:
    shuffled = shuffled_articles(ids, starts, np.random.default_rng([seed, epoch]))
    assert shuffled.dtype == ids.dtype and sorted(shuffled.tolist()) == ids.tolist()  # the same multiset
    where = np.argsort(shuffled)  # position of each token
    for article in articles:  # intact and contiguous: its tokens in a row, in their order
      np.testing.assert_array_equal(shuffled[where[article[0]]:where[article[0]] + len(article)], article)
    return sorted(range(len(articles)), key=lambda k: where[articles[k][0]])

  orders = [order(1111, epoch) for epoch in (1, 2, 3)]
  assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]
  assert orders[0] != list(range(len(articles)))
  assert order(1111, 2) == orders[1]
  assert order(1112, 1) != orders[0]


def write_articles(directory, vocab: list[str], splits: dict[str, list[list[int]]]) -> None:
  (directory / "vocab.txt").write_text("".join(f"{w}\n" for w in vocab), encoding="utf-8")
  for split, articles in splits.items():
    array = np.empty(len(articles), dtype=object)
    array[:] = [np.array(a, dtype=np.int64) for a in articles]
    np.save(directory / f"{split}.npy", array, allow_pickle=True)


VOCAB = ["the", "cat", "sat", "<eos>", "dog", "ran", "é"]
# Enough for the tiny config's batches, so that training on a bad variant would run were it not refused.
SPLITS = {"train": [[0, 1, 2, 3] * 5, [0, 4, 5, 3, 6] * 4, [1, 1]], "valid": [[0, 4, 3] * 10, [2, 2]],
          "test": [[6, 5] * 10]}


def test_the_articles_source_round_trips_a_small_corpus(tmp_path, tiny):
  write_articles(tmp_path, VOCAB, SPLITS)
  c = tiny(**{"data.source": "articles", "data.dir": str(tmp_path), "data.shuffle_articles": True})
  corpus = load_corpus(c.data, training=True)
  assert corpus.vocab.words == tuple(VOCAB)
  for split, articles in SPLITS.items():
    assert corpus.ids[split].dtype == np.int32
    assert corpus.ids[split].tolist() == [i for a in articles for i in a]  # as given: no <eos> added
  assert corpus.train_articles.tolist() == [0, 20, 40]


BAD_INPUTS = {
    "missing": ("lacks test.npy, vocab.txt; the 'articles' source needs train.npy"),
    "out of range": (r"train.npy: article 1 holds id 7, outside 0..6 \(vocab.txt has 7 words\); use the vocab.txt"),
    "negative": (r"valid.npy: article 1 holds id -1, outside 0..6"),
    "not object": (r"test.npy holds a 1-D int64 array, not a 1-D object array of articles; save a 1-D object array"),
    "equal lengths": (r"train.npy holds a 2-D object array, not a 1-D object array of articles"),
    "nested": (r"train.npy: article 0 is a 2-D int64 array, not a 1-D array of integer ids"),
    "floats": (r"train.npy: article 1 is a 1-D float64 array, not a 1-D array of integer ids"),
    "not npy": (r"valid.npy is not a NumPy .npy file \(\w+\); save a 1-D object array"),
    "duplicate word": (r"vocab.txt lists 'cat' twice \(lines 2 and 8\)"),
}


def make_bad(directory, problem: str) -> None:
  write_articles(directory, VOCAB, SPLITS)
  if problem == "missing":
    (directory / "test.npy").unlink()
    (directory / "vocab.txt").unlink()
  elif problem == "out of range":
    write_articles(directory, VOCAB, {"train": [[0] * 100, [1, 7]]})  # enough data to train on but for the 7
  elif problem == "negative":
    write_articles(directory, VOCAB, {"valid": [[2] * 100, [-1, 2]]})
  elif problem == "not object":
    np.save(directory / "test.npy", np.array([1, 2, 3], dtype=np.int64))
  elif problem == "equal lengths":  # np.array(articles, dtype=object) of equal-length articles is 2-D
    np.save(directory / "train.npy", np.array([[0, 1], [2, 3]], dtype=object), allow_pickle=True)
  elif problem == "nested":
    write_articles(directory, VOCAB, {"train": [[[0, 1], [2, 3]]]})
  elif problem == "floats":
    array = np.empty(2, dtype=object)
    array[:] = [np.array([0, 1]), np.array([0.5, 1.0])]
    np.save(directory / "train.npy", array, allow_pickle=True)
  elif problem == "not npy":
    (directory / "valid.npy").write_bytes(b"this is text, not an array\n")
  elif problem == "duplicate word":
    write_articles(directory, VOCAB + ["cat"], SPLITS)


@pytest.mark.parametrize("problem", list(BAD_INPUTS))
def test_bad_article_input_is_one_line_and_writes_nothing(tmp_path, tiny, problem):
  data = tmp_path / "data"
  data.mkdir()
  make_bad(data, problem)
  workdir = tmp_path / "run"
  c = tiny(**{"data.source": "articles", "data.dir": str(data)})
  with pytest.raises(UserError, match=BAD_INPUTS[problem]) as raised:
    train_and_evaluate(c, str(workdir))
  assert "\n" not in str(raised.value)
  assert not workdir.exists()


def article_corpus(directory, seed: int = 0) -> None:
  """120 articles of 20-140 tokens from a 60-word vocabulary, each article drawn around its own few words."""
  rng = np.random.default_rng(seed)
  vocab = [f"w{i}" for i in range(60)]

  def articles(n: int) -> list[list[int]]:
    return [rng.choice(rng.choice(60, 6, replace=False), size=int(rng.integers(20, 140))).tolist() for _ in range(n)]

  write_articles(directory, vocab, {"train": articles(120), "valid": articles(12), "test": articles(12)})


def latest_params(workdir: str, c, vocab_size: int) -> dict:
  params = model_from_config(c.model, vocab_size).init_params(0)
  like = {"params": params, "opt_state": optim.make_optimizer(c.optim).init(params)}
  return checkpoints.restore(workdir, checkpoints.LATEST, like)[0]["params"]


def test_shuffled_training_runs_and_resumes_mid_epoch_exactly(tmp_path, monkeypatch):
  (tmp_path / "data").mkdir()
  article_corpus(tmp_path / "data")
  overrides = {"data.source": "articles", "data.dir": str(tmp_path / "data"), "epochs": 3, "model.dropout": 0.2}
  c = tiny_config(**overrides, **{"data.shuffle_articles": True})
  straight = train_and_evaluate(c, str(tmp_path / "straight"))
  assert all(np.isfinite(v) for v in straight.values()), straight
  # One epoch is 118 windows (batch 8, bptt 10): stop as SIGTERM would at step 150, inside epoch 2, and resume
  # there; the resumed run re-draws epoch 2's order and must see the same one.
  with monkeypatch.context() as patch:
    patch.setattr(parallel.StopSignal, "reached", lambda self, step: step >= 150)
    with pytest.raises(Preempted, match="epoch 2, batch 32/118"):
      train_and_evaluate(c, str(tmp_path / "resumed"))
  resumed = train_and_evaluate(c, str(tmp_path / "resumed"), resume=True)
  assert resumed == straight
  shuffled = latest_params(str(tmp_path / "straight"), c, 60)
  jax.tree.map(np.testing.assert_array_equal, shuffled, latest_params(str(tmp_path / "resumed"), c, 60))
  # The shuffle reached the training steps: the same run in the corpus order ends elsewhere.
  train_and_evaluate(tiny_config(**overrides), str(tmp_path / "in_order"))
  in_order = latest_params(str(tmp_path / "in_order"), c, 60)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(in_order), jax.tree.leaves(shuffled)))
