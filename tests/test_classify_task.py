"""The classification task end to end: a CNN on the synthetic corpus comes near its exact Bayes accuracy, a run
resumes exactly (after an epoch and after SIGTERM mid-epoch), cross-validation runs one model per fold, the
scores match scikit-learn, Adadelta is the registry's, and the commands' outputs and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax
import pytest

from lm_jax import checkpoints, optim, parallel
from lm_jax.classify import metrics, trained
from lm_jax.classify.config import classify_config
from lm_jax.classify.train import SUMMARY_FILE, train_and_evaluate
from lm_jax.runner import Preempted
from tests.conftest import in_optimised_process

REPO = Path(__file__).resolve().parents[1]


def tiny(epochs: int = 2, **data) -> ml_collections.ConfigDict:
  c = classify_config("cnn")
  c.data.synthetic.update(train_size=400, dev_size=100, test_size=200)
  c.data.update(**data)
  c.model.update(emsize=16, filter_maps=8)
  c.update(epochs=epochs, batch_size=20, log_interval=10)
  return c


def near_bayes_run(workdir: str) -> dict:
  c = classify_config("cnn")
  c.model.update(emsize=32, filter_maps=20)
  c.epochs = 4
  return {**train_and_evaluate(c, workdir), "test_size": c.data.synthetic.test_size}


def test_a_cnn_on_the_synthetic_corpus_comes_near_its_exact_bayes_accuracy(tmp_path):
  results = in_optimised_process("tests.test_classify_task:near_bayes_run", workdir=str(tmp_path))
  bayes, n = results["test_bayes_accuracy"], results["test_size"]
  # Above Bayes by more than sampling noise would mean a leak; the margin below is what 4 epochs reach.
  assert bayes - 0.12 <= results["test_accuracy"] <= bayes + 4 * np.sqrt(bayes * (1 - bayes) / n), results


def test_resuming_after_an_epoch_and_after_sigterm_mid_epoch_gives_the_uninterrupted_run(tmp_path, monkeypatch):
  straight = train_and_evaluate(tiny(), str(tmp_path / "straight"))
  train_and_evaluate(tiny(epochs=1), str(tmp_path / "epoch"))
  assert train_and_evaluate(tiny(), str(tmp_path / "epoch"), resume=True) == straight
  monkeypatch.setattr(parallel.StopSignal, "reached", lambda self, step: step == 27)  # epoch 2, batch 7 of 20
  with pytest.raises(Preempted, match=r"epoch 2, batch 7/20 \(step 27\)"):
    train_and_evaluate(tiny(), str(tmp_path / "sigterm"))
  monkeypatch.undo()
  assert train_and_evaluate(tiny(), str(tmp_path / "sigterm"), resume=True) == straight
  like = {"params": trained.load(str(tmp_path / "straight")).params}
  a, b = (checkpoints.restore(str(tmp_path / run), checkpoints.LATEST, like)[0] for run in ("straight", "sigterm"))
  jax.tree.map(np.testing.assert_array_equal, a, b)


def write_csv(path, rows: list[tuple[str, str]]) -> str:
  path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
  return str(path)


def test_a_corpus_without_a_test_split_is_cross_validated_one_run_per_fold(tmp_path):
  rng = np.random.default_rng(0)
  rows = [(" ".join(rng.choice(["good", "fine", "nice"] if label == "pos" else ["bad", "poor", "dull"], 4)), label)
          for label in ["pos", "neg"] * 30]
  c = tiny(epochs=1, source="csv", path=write_csv(tmp_path / "reviews.csv", rows), folds=3)
  summary = train_and_evaluate(c, str(tmp_path / "cv"))
  folds = [json.loads(line) for f in range(1, 4)
           for line in open(tmp_path / "cv" / f"fold-{f}" / "metrics.jsonl") if "test_accuracy" in line]
  assert [round(r["test_accuracy"], 12) for r in folds] == [round(a, 12) for a in summary["test_accuracies"]]
  assert summary["test_accuracy_mean"] == pytest.approx(np.mean(summary["test_accuracies"]), abs=1e-12)
  assert json.loads((tmp_path / "cv" / SUMMARY_FILE).read_text()) == summary
  assert trained.load(str(tmp_path / "cv" / "fold-2")).fold == "fold 2/3"


def test_scores_match_scikit_learn():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(1)
  probs_NxC = rng.dirichlet(np.ones(4), size=300)
  labels_N = rng.integers(0, 4, 300)
  labels_N[:3] = 3  # class 3 present; the predictions may miss a class entirely
  got = metrics.scores(probs_NxC, labels_N)
  predicted_N = probs_NxC.argmax(axis=1)
  assert got.accuracy == sklearn_metrics.accuracy_score(labels_N, predicted_N)
  assert got.macro_f1 == pytest.approx(sklearn_metrics.f1_score(labels_N, predicted_N, average="macro",
                                                                labels=range(4), zero_division=0), abs=1e-12)
  np.testing.assert_array_equal(got.confusion_CxC, sklearn_metrics.confusion_matrix(labels_N, predicted_N,
                                                                                    labels=range(4)))
  assert got.nll == pytest.approx(sklearn_metrics.log_loss(labels_N, probs_NxC, labels=range(4)), rel=1e-9)


def test_adadelta_without_a_clip_is_optax_adadelta_at_kims_settings():
  c = classify_config().optim
  params = {"w": np.linspace(-1, 1, 6, dtype=np.float32)}
  grads = {"w": np.linspace(2, -3, 6, dtype=np.float32)}
  ours, reference = optim.make_optimizer(c), optax.adadelta(1.0, rho=0.95, eps=1e-6)
  ours_state, reference_state = ours.init(params), reference.init(params)
  for _ in range(3):
    ours_update, ours_state = ours.update(grads, ours_state, params)
    reference_update, reference_state = reference.update(grads, reference_state, params)
    np.testing.assert_array_equal(ours_update["w"], reference_update["w"])


def classify_command(command: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"lm_jax.cli.{command}", *args], cwd=REPO, capture_output=True,
                        text=True, input=stdin, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
  assert result.returncode == 2, (result.returncode, result.stderr)
  assert "Traceback" not in result.stderr
  [line] = [line for line in result.stderr.splitlines() if "error:" in line]
  assert re.search(pattern, line), line


def test_evaluate_and_predict_commands_and_their_errors(tmp_path):
  workdir = str(tmp_path / "run")
  results = train_and_evaluate(tiny(), workdir)
  run = trained.load(workdir)
  texts = ["fa bo", "ki", "lu ma ne po"]
  expected = run.probabilities(texts)
  done = classify_command("classify_predict", f"--workdir={workdir}", stdin="\n".join(texts) + "\n")
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines() == [f"{run.classes[p.argmax()]}\t{p.max():.4f}" for p in expected]
  done = classify_command("classify_evaluate", f"--workdir={workdir}", "--split=dev")
  assert done.returncode == 0, done.stderr
  assert f"| dev split: 100 examples | accuracy {results['dev_accuracy']:.4f} |" in done.stdout, done.stdout
  before = sorted(os.listdir(tmp_path))
  assert_one_line_error(classify_command("classify_predict", f"--workdir={tmp_path / 'none'}"),
                        r"no best checkpoint in .*none/checkpoints/best; train a model there first")
  assert_one_line_error(classify_command("classify_evaluate", f"--workdir={workdir}", "--confusion_png=/no/dir/c.png"),
                        r"--confusion_png=/no/dir/c.png: folder /no/dir does not exist")
  assert sorted(os.listdir(tmp_path)) == before


def test_more_folds_than_a_class_has_examples_is_one_line_and_writes_nothing(tmp_path):
  path = write_csv(tmp_path / "small.csv", [("good film", "pos")] * 5 + [("bad film", "neg")] * 3)
  done = classify_command("classify", "--config=configs/classify_synthetic.py", "--config.data.source=csv",
                          f"--config.data.path={path}", "--config.data.folds=4", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(done, r"4-fold cross-validation needs at least 4 examples of every class, and class \d+ "
                              r"has 3; pass --config.data.folds=3 or fewer")
  assert not (tmp_path / "w").exists()
