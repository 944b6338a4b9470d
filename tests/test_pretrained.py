"""Pretrained embeddings and frozen embeddings: the text formats read back to the values written, the match
to the vocabulary (exact, then lower-case) and its coverage, the rows copied into a training run before
its first step (and not again on --resume), bad files as one line with nothing written, and a frozen
embedding matrix unchanged to the bit by every optimiser while the rest trains."""

from __future__ import annotations

import gzip
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm_jax import optim
from lm_jax.data.sources import load_corpus
from lm_jax.errors import UserError
from lm_jax.models.rnn_model import RNNModel
from lm_jax.pretrained import match, read_vectors
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config
from tests.test_cli import assert_one_line_error, lm_jax, TINY_FLAGS

# (word, values as text): the file's rows. "caf\u00a0e" holds a no-break space, as fastText's words may.
ROWS = [("the", "0.25 -1.5 3e-2"), ("City", "1 2 3"), ("city", "-0.125 0.5 7.75"), ("caf\u00a0e", "9 8 7"),
        ("the", "5 5 5")]


def expected_matrix(rows) -> np.ndarray:
  return np.array([[np.float32(float(v)) for v in values.split()] for _, values in rows], np.float32)


def write(path, text: str, compress: bool = False) -> str:
  data = text.encode("utf-8")
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if compress else data)
  return str(path)


@pytest.mark.parametrize("header, trailing, compress", [
    ("", "", False),                 # GloVe
    ("5 3\n", " ", False),           # word2vec / fastText .vec (fastText ends each row with a space)
    ("", "", True),                  # GloVe gzipped (told by the magic bytes: the name says nothing)
    ("5 3\n", "", True),
])
def test_formats_read_back_the_values_written(tmp_path, header, trailing, compress):
  text = header + "".join(f"{word} {values}{trailing}\n" for word, values in ROWS)
  words, vectors = read_vectors(write(tmp_path / "vectors.txt", text, compress))
  assert words == [word for word, _ in ROWS]
  assert vectors.dtype == np.float32
  np.testing.assert_array_equal(vectors, expected_matrix(ROWS))


def test_words_with_spaces_are_left_out_but_extra_values_are_ragged(tmp_path):
  # GloVe 840B has entries like ". . .": the word holds spaces, the values are still the last D fields.
  words, vectors = read_vectors(write(tmp_path / "v.txt", "a 1 2\n. . . 3 4\nb 5 6\n"))
  assert words == ["a", "b"]
  np.testing.assert_array_equal(vectors, [[1, 2], [5, 6]])
  with pytest.raises(UserError, match=r"line 2: 3 values where the file's rows have 2"):
    read_vectors(write(tmp_path / "long.txt", "a 1 2\nb 3 4 5\n"))


def test_match_exact_then_lower_case_and_the_coverage_line():
  words, vectors = [w for w, _ in ROWS], expected_matrix(ROWS)
  vocab = ["<eos>", "the", "The", "City", "CITY", "town", "caf\u00a0e"]
  matched = match(vocab, words, vectors)
  # the -> row 0 (first of the repeated word); The -> the (row 0); City -> row 1 exactly; CITY -> city (row 2)
  np.testing.assert_array_equal(matched.ids, [1, 2, 3, 4, 6])
  np.testing.assert_array_equal(matched.rows_MxD, vectors[[0, 0, 1, 2, 3]])
  assert (matched.exact, matched.lower) == (3, 2)
  assert matched.coverage(len(vocab), "v.txt") == ("| pretrained embeddings: 5 of 7 words (71.4%) from v.txt, "
                                                   "3 exact, 2 lower-case")


@pytest.mark.parametrize("text, message", [
    ("a 1 2\nb 3\n", r"v.txt line 2: 1 values where the file's rows have 2; fix or drop that line"),
    ("2 3\na 1 2 3\nb 1 2\n", r"v.txt line 3: 2 values where the file's rows have 3"),
    ("a 1 2\nb 1 x\n", r"v.txt line 2 holds a value that is not a number"),
    ("", r"v.txt holds no word vectors"),
])
def test_bad_files_are_one_line(tmp_path, text, message):
  with pytest.raises(UserError, match=message) as error:
    read_vectors(write(tmp_path / "v.txt", text))
  assert "\n" not in str(error.value)


# ---- in a training run ----

def small_config(**overrides):
  return tiny_config(**{"data.synthetic.train_tokens": 3000, "data.synthetic.valid_tokens": 500,
                        "data.synthetic.test_tokens": 500, "epochs": 1, **overrides})


def vectors_file(path, words, dim: int, seed: int = 0) -> tuple[str, np.ndarray]:
  """A word2vec-style file of `words` with random values written as text; returns its path and the values."""
  values = np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32)
  text = f"{len(words)} {dim}\n" + "".join(f"{w} {' '.join(format(v, '.9g') for v in row)}\n"
                                            for w, row in zip(words, values.tolist()))
  return write(path, text), values


def best_params(workdir):
  from lm_jax import trained
  return trained.load(str(workdir)).params


def test_training_starts_from_the_file_and_a_frozen_matrix_stays_it(tmp_path, capsys):
  config = small_config(**{"model.freeze_embeddings": True})
  vocab = load_corpus(config.data).vocab
  chosen = list(vocab.words[5:25])
  path, values = vectors_file(tmp_path / "v.txt", chosen + ["not-a-vocab-word"], dim=config.model.emsize)
  config.model.pretrained_embeddings = path
  train_and_evaluate(config, str(tmp_path / "run"))
  assert (f"| pretrained embeddings: 20 of {len(vocab)} words ({100 * 20 / len(vocab):.1f}%) from {path}, 20 exact, "
          "0 lower-case") in capsys.readouterr().out

  init = RNNModel(vocab_size=len(vocab), emsize=16, nhid=16, nlayers=1, dropout=0.0).init_params(config.seed)
  expected_VxE = np.array(init["embedding"])
  expected_VxE[5:25] = values[:20]  # the file's rows; every other row keeps the reference's init
  trained = best_params(tmp_path / "run")
  np.testing.assert_array_equal(np.asarray(trained["embedding"]), expected_VxE)  # unchanged by a whole epoch
  assert not np.allclose(trained["layer_0_w_hh"], init["layer_0_w_hh"])

  # --resume reads the checkpoint, not the file (gone now), and the embedding still does not move
  os.remove(path)
  train_and_evaluate(small_config(**{"model.freeze_embeddings": True, "model.pretrained_embeddings": path,
                                     "epochs": 2}), str(tmp_path / "run"), resume=True)
  np.testing.assert_array_equal(np.asarray(best_params(tmp_path / "run")["embedding"]), expected_VxE)


def test_either_family_gets_the_rows_through_its_embedding_param(tmp_path):
  from lm_jax.models.transformer import TransformerModel
  from lm_jax.pretrained import load_into

  path, values = vectors_file(tmp_path / "v.txt", ["b", "Z"], dim=4)
  vocab = ["a", "b", "c", "z"]
  for model in (RNNModel(vocab_size=4, emsize=4, nhid=4, nlayers=1),
                TransformerModel(vocab_size=4, emsize=4, nhid=4, nlayers=1, nhead=1)):
    params = model.init_params(0)
    loaded, matched = load_into(model, params, vocab, path)
    expected_VxE = np.array(params["embedding"])
    expected_VxE[1] = values[0]  # "z" has no row: the file's "Z" is not its lower-case form
    np.testing.assert_array_equal(loaded["embedding"], expected_VxE)
    assert (matched.exact, matched.lower) == (1, 0)
    assert all(loaded[k] is params[k] for k in params if k != "embedding")


def test_wrong_dimension_is_one_line_and_writes_nothing(tmp_path):
  path, _ = vectors_file(tmp_path / "v.txt", ["pi", "po"], dim=300)
  with pytest.raises(UserError, match=re.escape(f"{path} has 300-dim vectors but model.emsize is 16; set "
                                                "--config.model.emsize=300 (no projection is applied)")):
    train_and_evaluate(small_config(**{"model.pretrained_embeddings": path}), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_ragged_file_through_the_command_line(tmp_path):
  path = write(tmp_path / "v.txt", "pi 1 2\npo 3\n")
  result = lm_jax("train", *TINY_FLAGS, f"--config.model.pretrained_embeddings={path}", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"v.txt line 2: 1 values where the file's rows have 2")
  assert not os.path.exists(tmp_path / "w")


def test_pretrained_with_finetune_from_is_refused():
  from lm_jax.config import validate
  with pytest.raises(UserError, match=r"pretrained_embeddings fills the initial embeddings, which fine-tuning"):
    validate(small_config(**{"model.pretrained_embeddings": "v.txt", "finetune_from": "runs/x",
                             "optim.name": "nt_asgd"}))


# ---- the optimiser's freeze ----

@pytest.mark.parametrize("name", ["sgd", "nt_asgd", "adam", "adamw"])
def test_frozen_parameter_is_bit_exact_under_every_optimiser(name):
  """Steps with weight decay on (and nt_asgd averaging): the frozen matrix never moves, in the parameters
  nor in nt_asgd's average; the others do. (The training run above takes real train steps with sgd.)"""
  config = tiny_config(**{"optim.name": name, "optim.weight_decay": 0.01})
  optimizer = optim.make_optimizer(config.optim, frozen=["embedding"])
  rng = np.random.default_rng(0)
  params = {"embedding": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), "w": jnp.ones((4, 3))}
  opt_state = optimizer.init(params)
  if name == "nt_asgd":
    opt_state = optim.start_averaging(opt_state)
  trained = params
  for _ in range(5):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    updates, opt_state = optimizer.update(grads, opt_state, trained)
    trained = optax.apply_updates(trained, updates)
  for result in (trained, optim.evaluation_params(opt_state, trained)):
    np.testing.assert_array_equal(np.asarray(result["embedding"]), np.asarray(params["embedding"]))
    assert not np.array_equal(np.asarray(result["w"]), np.asarray(params["w"]))


def test_the_clip_leaves_the_frozen_gradient_out():
  """As torch's clip_grad_norm_ over the parameters that require a gradient: the norm is of the others."""
  grads = {"embedding": jnp.full((4, 3), 10.0), "w": jnp.array([3.0, 4.0])}
  config = tiny_config(**{"optim.clip": 1.0, "optim.lr": 2.0})
  optimizer = optim.make_optimizer(config.optim, frozen=["embedding"])
  updates, _ = optimizer.update(grads, optimizer.init(grads), grads)
  scale = 1.0 / (np.linalg.norm([3.0, 4.0]) + 1e-6)  # 5 without the embedding's gradient, not ~35
  np.testing.assert_allclose(np.asarray(updates["w"]), -2.0 * scale * np.array([3.0, 4.0]), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(updates["embedding"]), 0.0)
