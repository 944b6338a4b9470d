"""lm-jax-embeddings on a trained run: nearest neighbours against a NumPy float64 cosine computation, the
t-SNE map's words and its printed settings, the GloVe export read back exactly, and bad requests as one
line with nothing written."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lm_jax import embeddings, trained
from lm_jax.data.sources import load_corpus
from lm_jax.errors import UserError
from lm_jax.pretrained import read_vectors
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config
from tests.test_cli import ROOT, assert_one_line_error


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("embeddings") / "run")
  config = tiny_config(**{"data.synthetic.train_tokens": 3000, "data.synthetic.valid_tokens": 500,
                          "data.synthetic.test_tokens": 500, "epochs": 1})
  train_and_evaluate(config, workdir)
  return workdir


def lm_jax_embeddings(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "lm_jax.cli.embeddings", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def cosine_neighbours(embedding_VxE: np.ndarray, word_id: int, k: int) -> list[tuple[int, float]]:
  """The definition, in float64: cos(a, b) = a.b / (|a| |b|) against every other row, largest first."""
  rows = embedding_VxE.astype(np.float64)
  cosines = {j: float(rows[j] @ rows[word_id] / (np.sqrt(rows[j] @ rows[j]) * np.sqrt(rows[word_id] @ rows[word_id])))
             for j in range(len(rows)) if j != word_id}
  return sorted(cosines.items(), key=lambda item: -item[1])[:k]


def test_neighbours_map_and_export_in_one_call(run_dir, tmp_path):
  run = trained.load(run_dir)
  embedding_VxE = np.asarray(run.params["embedding"])
  words = [run.vocab.words[3], run.vocab.words[40]]
  tsne, export = tmp_path / "map.png", tmp_path / "vectors.txt"
  result = lm_jax_embeddings(f"--workdir={run_dir}", f"--neighbours={','.join(words)}", "--k=5", f"--tsne={tsne}",
                             "--words=30", "--perplexity=5", "--seed=3", f"--export={export}")
  assert result.returncode == 0, result.stderr

  printed = re.findall(r"^\|\s+\d+\s+(\S+)\s+(-?[\d.]+)$", result.stdout, re.M)
  expected = [(run.vocab.words[j], cosine) for word in words for j, cosine in
              cosine_neighbours(embedding_VxE, run.vocab.index[word], 5)]
  assert [w for w, _ in printed] == [w for w, _ in expected]
  np.testing.assert_allclose([float(c) for _, c in printed], [c for _, c in expected], atol=5e-5)

  assert tsne.read_bytes().startswith(b"\x89PNG")
  assert re.search(r"wrote a t-SNE map of the 30 most frequent words to .*map.png \| perplexity 5, learning_rate "
                   r"auto \(= [\d.]+\), init pca, metric cosine, seed 3", result.stdout), result.stdout

  file_words, vectors = read_vectors(str(export))
  assert file_words == list(run.vocab.words)
  np.testing.assert_array_equal(vectors, embedding_VxE)  # every float32 back exactly


def test_the_map_shows_the_most_frequent_words_of_the_training_split(run_dir):
  run = trained.load(run_dir)
  train_ids = load_corpus(run.config.data).ids["train"]
  counts = collections.Counter(train_ids.tolist())  # insertion order = first appearance = id order
  expected = [word_id for word_id, _ in counts.most_common(12)]
  np.testing.assert_array_equal(embeddings.map_words("frequent", 12, train_ids, len(run.vocab)), expected)
  np.testing.assert_array_equal(embeddings.map_words("first", 4, None, len(run.vocab)), [0, 1, 2, 3])


@pytest.mark.parametrize("flags, message", [
    (["--neighbours=pi,zzz-not-a-word", "--export={out}"], r"'zzz-not-a-word' not in the vocabulary of .* words\); "
                                                           r"pass words the model knows"),
    (["--tsne={out}", "--words=5000"], r"--words 5000 exceeds the vocabulary \(\d+ words\); pass --words=\d+ or fewer"),
    (["--tsne={out}", "--words=20"], r"--perplexity must be > 0 and below the number of words mapped \(20\), got 30"),
    ([], r"nothing to do; pass --neighbours"),
    (["--export={out}/vectors.txt"], r"--export=.*/out/vectors.txt: folder .*/out does not exist; create it or pass "
                                     r"another path"),
])
def test_bad_requests_are_one_line_and_write_nothing(run_dir, tmp_path, flags, message):
  out = tmp_path / "out"
  result = lm_jax_embeddings(f"--workdir={run_dir}", *(flag.format(out=out) for flag in flags))
  assert_one_line_error(result, message)
  assert not os.listdir(tmp_path)


def test_a_corpus_with_another_vocabulary_is_one_line_and_writes_nothing(run_dir, tmp_path):
  other = tmp_path / "other"
  other.mkdir()
  for split in ("train", "valid", "test"):
    (other / f"{split}.txt").write_text("a b c\n")
  out = tmp_path / "map.png"
  result = lm_jax_embeddings(f"--workdir={run_dir}", f"--tsne={out}", "--words=5", "--perplexity=2",
                             f"--data_dir={other}")
  assert_one_line_error(result, r"the data's vocabulary \(4 words\) is not the checkpoint's \([\d,]+ words\); pass the "
                                r"data the model was trained on with --data_dir, or --order=first$")
  assert not out.exists()


def test_missing_scikit_learn_names_the_extra(monkeypatch):
  real_find_spec = embeddings.importlib.util.find_spec
  monkeypatch.setattr(embeddings.importlib.util, "find_spec",
                      lambda name, *args: None if name == "sklearn" else real_find_spec(name, *args))
  with pytest.raises(UserError, match=re.escape("(sklearn missing); pip install -e '.[viz]'")):
    embeddings.require_viz()
