"""The classification benchmark: NBSVM's log-count ratio and the report's arithmetic (runs, speed ratios, targets,
a merge) against hand computations, the same splits for every model and baseline, every (dataset, model) config
valid, a missing corpus as one line, and one `--quick` run end to end on a tiny separable MR corpus it writes, the
CNN with two seeds (NBSVM scores 1.0 there; both frameworks' predictions agree at the shared weights). No timed
assertion."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from lm_jax.classify import config as config_lib
from lm_jax.classify.data.config import load_corpus
from lm_jax.classify.data.splits import evaluation_folds

from benchmarks.classification import datasets, nbsvm, report
from benchmarks.classification.speed import QUICK_SHAPE
from benchmarks.common.worker import REPO
from benchmarks.conftest import quick_benchmark
from tests.conftest import wait_until

POSITIVE, NEGATIVE = "great", "awful"
SEEDS = 2


def write_mr(directory: Path, per_class: int = 30) -> None:
  """MR's layout (rt-polarity.pos/.neg, cp1252): every positive line holds `great`, every negative one `awful`,
  among noise words drawn alike for both classes, so a test line is classified by the word alone."""
  rng = np.random.default_rng(0)
  noise = [f"word{i}" for i in range(12)]
  directory.mkdir(parents=True)
  for suffix, marker in (("pos", POSITIVE), ("neg", NEGATIVE)):
    lines = [" ".join([marker, *rng.choice(noise, size=4)]) + " caf\xe9 .\n" for _ in range(per_class)]
    (directory / f"rt-polarity.{suffix}").write_bytes("".join(lines).encode("cp1252"))


def test_log_count_ratio_by_hand():
  x_NxF = sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float64))
  # p = 1 + (2, 1, 1) = (3, 2, 2), |p| 7; q = 1 + (0, 1, 1) = (1, 2, 2), |q| 5.
  r_F = nbsvm.log_count_ratio(x_NxF, np.array([True, True, False]))
  np.testing.assert_allclose(r_F, np.log([(3 / 7) / (1 / 5), (2 / 7) / (2 / 5), (2 / 7) / (2 / 5)]))


def test_nbsvm_features_are_unigrams_and_bigrams():
  assert nbsvm.ngrams(["a", "b", "c"]) == ["a", "b", "c", "a b", "b c"]


@pytest.mark.parametrize("num_classes", [2, 3])
def test_nbsvm_classifies_a_separable_corpus(num_classes):
  """Class k's texts hold the word `mark<k>` and shared noise: one classifier (2 classes, its scores s and -s) or
  one per class, and every test text right."""
  rng = np.random.default_rng(1)
  labels_N = np.arange(60) % num_classes
  texts = [[f"mark{label}", *rng.choice(["x", "y", "z", "w"], size=3)] for label in labels_N]
  model = nbsvm.fit(texts[:45], labels_N[:45], num_classes, c=1.0)
  assert len(model.classifiers) == (1 if num_classes == 2 else num_classes)
  scores_NxC = model.scores(texts[45:])
  assert scores_NxC.shape == (15, num_classes)
  if num_classes == 2:
    np.testing.assert_allclose(scores_NxC[:, 0], -scores_NxC[:, 1])
  np.testing.assert_array_equal(model.predict(texts[45:]), labels_N[45:])


def test_fold_summary_by_hand():
  summary = report.fold_summary([{"test_accuracy": 0.8, "test_macro_f1": 0.7},
                                 {"test_accuracy": 0.6, "test_macro_f1": 0.5}])
  assert (summary["runs"], summary["accuracy"], summary["macro_f1"]) == (2, pytest.approx(0.7), pytest.approx(0.6))
  assert summary["accuracy_std"] == pytest.approx(0.1)  # over the folds: |0.8 - 0.7| = |0.6 - 0.7|
  assert report.fold_summary([{"test_accuracy": 0.9, "test_macro_f1": 0.9}])["accuracy_std"] is None
  assert report.percent({"accuracy": 0.7612, "accuracy_std": 0.0153}) == "76.1 ± 1.5"


def speed_run(train: float, predict: float, probabilities: list[list[float]]) -> dict:
  return {"train_examples_per_s": train, "predict_examples_per_s": predict, "train_ms": 50_000 / train,
          "probabilities": probabilities}


def test_speed_ratios_medians_and_probability_difference_by_hand():
  runs = {"lm_jax": [speed_run(300, 2000, [[0.25, 0.75]]), speed_run(200, 1800, [[0.5, 0.5]]),
                     speed_run(330, 2200, [[0.1, 0.9]])],
          "pytorch": [speed_run(200, 1000, [[0.25, 0.75]]), speed_run(100, 1200, [[0.5 + 3e-7, 0.5 - 3e-7]]),
                      speed_run(300, 1000, [[0.1, 0.9]])]}
  speed = report.summarise_speed({"batch": 50}, runs)
  np.testing.assert_allclose(speed["ratios"]["train"], [1.5, 2.0, 1.1])
  np.testing.assert_allclose(speed["ratios"]["predict"], [2.0, 1.5, 2.2])
  assert speed["median_ratio"] == {"train": pytest.approx(1.5), "predict": pytest.approx(2.0)}
  assert speed["median"]["pytorch"]["train_examples_per_s"] == 200
  assert speed["max_probability_difference"] == pytest.approx(3e-7)


def row(dataset: str, model: str, accuracy: float, std: float | None = None) -> dict:
  return {"dataset": dataset, "model": model, "accuracy": accuracy, "accuracy_std": std, "train_s": 12.0}


def test_targets_by_hand():
  rows = [row("mr", "cnn", 0.752, 0.015), row("sst2", "cnn", 0.816), row("mr", "gru", 0.7), row("mr", "nbsvm", 0.79),
          row("sst2", "nbsvm", 0.8)]
  skipped = [{"dataset": d, "model": "fasttext", "reason": "not installed"} for d in ("mr", "sst2")]
  speed = {"median_ratio": {"train": 1.5, "predict": 1.99}}
  found = {t["target"]: (t["measured"], t["met"]) for t in report.targets(rows, skipped, speed)}
  # Kim: MR 75.2 >= 76.1 - 1; SST-2 81.6 < 82.7 - 1; TREC not in this report.
  assert found["Kim's CNN-rand on mr: within 1 point of his 76.1 (or above)"] == ("75.2 ± 1.5", True)
  assert found["Kim's CNN-rand on sst2: within 1 point of his 82.7 (or above)"] == ("81.6", False)
  assert found["Kim's CNN-rand on trec: within 1 point of his 91.2 (or above)"] == (None, None)
  measured, met = found["GRU and CNN->RNN measured on MR, SST-2, TREC and IMDB"]
  assert not met and measured.startswith("gru mr 70.0 (12 s); missing gru sst2, gru trec, gru imdb, cnn_rnn mr")
  measured, met = found["fastText and NBSVM measured on the same splits as the models, with their time"]
  assert not met and measured.endswith("missing fasttext mr (not installed), fasttext sst2 (not installed)")
  assert found["Kim's CNN training examples/s >= 1.5x PyTorch's"] == ("1.50x", True)
  assert found["Kim's CNN prediction examples/s >= 2x PyTorch's"] == ("1.99x", False)
  assert all(t["met"] is None for t in report.targets([], [], None))


def test_merge_keeps_the_rows_not_measured_again():
  previous = {"date": "2026-12-01", "rows": [row("mr", "cnn", 0.75), row("trec", "cnn", 0.9)], "skipped": [],
              "speed": {"median_ratio": {"train": 2.0, "predict": 3.0}},
              "language_models": {"trec": ["trec's, earlier"], "imdb": ["imdb's"]}}
  current = {"date": "2026-12-02", "rows": [row("mr", "cnn", 0.76)], "skipped": [], "speed": None,
             "language_models": {"trec": ["trec's, now"]}}
  merged = report.merged(previous, current)
  assert merged["language_models"] == {"trec": ["trec's, now"], "imdb": ["imdb's"]}
  assert [(r["dataset"], r["accuracy"], r.get("carried_from")) for r in merged["rows"]] == [
      ("mr", 0.76, None), ("trec", 0.9, "2026-12-01")]
  assert merged["speed"]["carried_from"] == "2026-12-01"
  assert report.targets(merged["rows"], [], merged["speed"])[2]["measured"] == "90.0"


def test_every_model_and_baseline_runs_on_the_same_folds(tmp_path):
  write_mr(tmp_path / "mr")
  folds = {}
  for model in set(datasets.MODELS) - set(datasets.ULMFIT_ROWS):  # --quick has no language models
    config = datasets.config_for("mr", model, str(tmp_path), quick=True)
    config_lib.validate(config)
    corpus = load_corpus(config.data)
    folds[model] = [(f.train.texts, f.dev.texts, f.test.texts) for f in evaluation_folds(corpus, config.data)]
  assert len(folds["cnn"]) == datasets.QUICK_FOLDS
  assert folds["cnn"] == folds["gru"] == folds["cnn_rnn"]


@pytest.mark.parametrize("dataset", datasets.DATASETS)
def test_every_dataset_and_model_config_is_valid(dataset):
  for model in ("cnn", "gru", "cnn_rnn"):
    config = datasets.config_for(dataset, model, "/data", epochs=3)
    config_lib.validate(config)
    assert config.epochs == 3
    if model != "cnn":  # the brief's 50 words, all the flatten readout reads
      assert config.data.max_len == config.model.max_len == 50


def test_lr_sets_every_models_lr_and_the_row_names_it():
  for model in datasets.MODELS:
    default = datasets.config_for("imdb", model, "/data", ulmfit_dir="/lms")
    changed = datasets.config_for("imdb", model, "/data", lr=2.5e-4, ulmfit_dir="/lms")
    assert changed.optim.lr == 2.5e-4 != default.optim.lr
    assert changed.to_dict() == {**default.to_dict(), "optim": {**default.optim.to_dict(), "lr": 2.5e-4}}
  row = {"epochs": 6, "seeds": 1}
  assert (report._setting(row), report._setting({**row, "lr": 2.5e-4})) == ("6 epochs", "6 epochs, lr 0.00025")


def test_a_non_positive_lr_is_one_line_and_writes_nothing(tmp_path):
  (tmp_path / "trec").mkdir()
  done = subprocess.run([sys.executable, "-m", "benchmarks.classification", f"--data_root={tmp_path}",
                         "--datasets=trec", "--lr=0", f"--output_dir={tmp_path / 'out'}"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert done.stderr.strip() == ("classification: error: --lr must be > 0 (got 0); pass e.g. --lr=1e-3, or leave it "
                                 "out for each recipe's")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dataset", ["mr", "sst2", "trec", "imdb"])
def test_the_ulmfit_rows_add_one_step_of_the_recipe_each(dataset):
  """No pretraining -> WikiText-2's encoder -> the LM fine-tuned on the corpus's text -> with the recipe; every row
  on the same data fields (the same splits) as the other models."""
  configs = {model: datasets.config_for(dataset, model, "/data", ulmfit_dir="/lms") for model in datasets.ULMFIT_ROWS}
  for config in configs.values():
    config_lib.validate(config)
    assert config.model.kind == "lm_encoder" and config.data.path == f"/data/{dataset}"
    assert config.data.source == datasets.config_for(dataset, "cnn", "/data").data.source
  assert {m: (c.model.encoder_from, c.model.from_scratch) for m, c in configs.items()} == {
      "ulmfit_scratch": (f"/lms/{dataset}_lm", True), "ulmfit_wt2": ("/lms/wt2", False),
      "ulmfit_lm": (f"/lms/{dataset}_lm", False), "ulmfit": (f"/lms/{dataset}_lm", False)}
  recipe = lambda c: (c.optim.layer_lr_decay, c.optim.unfreeze_every, c.optim.schedule)
  assert [recipe(configs[m]) for m in datasets.ULMFIT_ROWS] == [(1.0, 0, "plateau")] * 3 + [(2.6, 1, "stlr")]


def test_the_language_model_stages_are_read_from_their_workdirs(tmp_path):
  for folder, losses, seconds in (("wt2", [5.0, 4.5], [100.0, 120.0]), ("trec_lm", [4.0, 3.5, 3.75], [5.0] * 3)):
    (tmp_path / folder).mkdir()
    epochs = [{"epoch": e + 1, "valid_loss": loss, "valid_ppl": math.exp(loss), "epoch_seconds": s}
              for e, (loss, s) in enumerate(zip(losses, seconds))]
    records = [{"step": 1, "train_loss": 9.0}] + epochs
    (tmp_path / folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  stages = datasets.language_model_stages("trec", str(tmp_path))
  assert [(s["epochs"], s["train_s"]) for s in stages] == [(2, 220.0), (3, 15.0)]
  assert [s["best_valid_ppl"] for s in stages] == pytest.approx([math.exp(4.5), math.exp(3.5)])
  assert "| trec | 2. LM fine-tuned on the target text | " in "\n".join(report.language_model_lines({"trec": stages}))


def test_the_ulmfit_targets_compare_the_full_recipe_with_each_published_figure():
  rows = [{"dataset": d, "model": m, "accuracy": a, "accuracy_std": None, "train_s": 1.0}
          for d, m, a in (("trec", "ulmfit", 0.936), ("trec", "ulmfit_lm", 0.99), ("sst2", "ulmfit", 0.85),
                          ("imdb", "ulmfit", 0.9125))]
  found = {t["target"]: (t["measured"], t["met"]) for t in report.targets(rows, [], None)}
  assert found["ULMFiT on trec: above Kim's best (CNN-non-static) 93.6"] == ("93.6", False)  # equal is not above
  assert found["ULMFiT on sst2: at least 85.0"] == ("85.0", True)
  assert found["ULMFiT on imdb: above NBSVM-bi's 91.2"] == ("91.2", False)  # 91.25 rounds to the figure
  assert found["ULMFiT on mr: above NBSVM-bi's 79.4"] == (None, None)


def test_a_ulmfit_row_without_its_language_model_is_one_line_and_writes_nothing(tmp_path):
  (tmp_path / "trec").mkdir()
  done = subprocess.run([sys.executable, "-m", "benchmarks.classification", f"--data_root={tmp_path}",
                         "--datasets=trec", "--models=ulmfit_wt2", "--parts=accuracy", f"--ulmfit_dir={tmp_path}",
                         f"--output_dir={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"classification: error: ulmfit_wt2 on trec starts from the language model in "
                                 f"{tmp_path / 'wt2'}, which holds no trained model; train it with steps 1 and 2 of "
                                 "docs/classification.md's ULMFiT recipe, or pass --ulmfit_dir")
  assert not (tmp_path / "out").exists()


def test_a_missing_corpus_is_one_line_and_writes_nothing(tmp_path):
  done = subprocess.run([sys.executable, "-m", "benchmarks.classification", f"--data_root={tmp_path}",
                         "--datasets=trec", f"--output_dir={tmp_path / 'out'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"classification: error: no trec corpus: {tmp_path / 'trec'} is not a directory; "
                                 "pass --data_root=DIR holding trec/ as ../shared/data/README.md lays it out, or "
                                 "leave trec out of --datasets")
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
  root = tmp_path_factory.mktemp("classification")
  write_mr(root / "mr")
  return root, quick_benchmark("classification", root / "out", "--datasets=mr", f"--data_root={root}",
                               f"--runs_dir={root / 'runs'}", f"--seeds={SEEDS}")


def test_quick_run_scores_every_model_on_the_same_folds(quick_run):
  _, results = quick_run
  rows = {r["model"]: r for r in results["rows"]}
  fasttext_installed = importlib.util.find_spec("fasttext") is not None
  assert set(rows) == {"cnn", "nbsvm"} | ({"fasttext"} if fasttext_installed else set())
  for r in rows.values():
    runs = datasets.QUICK_FOLDS * (SEEDS if r["model"] == "cnn" else 1)  # the baselines are deterministic
    assert r["runs"] == runs and len(r["run_accuracies"]) == runs
    assert r["accuracy"] == pytest.approx(np.mean(r["run_accuracies"]))
    assert r["accuracy_std"] == pytest.approx(np.std(r["run_accuracies"]))
    assert math.isfinite(r["train_s"]) and r["train_s"] > 0 and r["peak_rss_mib"] > 0
  assert rows["cnn"]["epochs"] == datasets.QUICK_EPOCHS
  # Every test line holds its class's word: NBSVM gets all of them right, in both folds.
  assert rows["nbsvm"]["run_accuracies"] == [1.0, 1.0] and rows["nbsvm"]["macro_f1"] == 1.0
  assert all(c in (0.1, 1.0, 10.0) for c in rows["nbsvm"]["chosen"])
  if not fasttext_installed:
    assert results["skipped"] == [{"dataset": "mr", "model": "fasttext",
                                   "reason": "fastText is not installed (pip install -e '.[classify-bench]')"}]


def test_quick_run_pairs_both_frameworks_on_the_same_shapes_and_weights(quick_run):
  _, results = quick_run
  speed = results["speed"]
  assert speed["shape"]["vocab"] == QUICK_SHAPE.vocab and speed["shape"]["length"] == QUICK_SHAPE.length
  (jax_run,), (torch_run,) = speed["runs"]["lm_jax"], speed["runs"]["pytorch"]
  for run in (jax_run, torch_run):
    assert run["train_examples_per_s"] == pytest.approx(QUICK_SHAPE.batch / (run["train_ms"] / 1000))
    assert run["predict_examples_per_s"] == pytest.approx(QUICK_SHAPE.predict_batch / (run["predict_ms"] / 1000))
  ratio = jax_run["train_examples_per_s"] / torch_run["train_examples_per_s"]
  assert speed["ratios"]["train"] == [pytest.approx(ratio)]
  # The same function of the same weights: equal probabilities, and not the uniform ones a zero output layer gives.
  np.testing.assert_allclose(jax_run["probabilities"], torch_run["probabilities"], atol=1e-5)
  assert np.abs(np.array(jax_run["probabilities"]) - 0.5).max() > 1e-3
  assert speed["max_probability_difference"] < 1e-5


def test_quick_run_keeps_the_lm_jax_runs_and_sums_their_epochs(quick_run):
  """--runs_dir: each seed's cross-validated run kept as lm-jax-classify keeps it (a fold per directory, resumable),
  the first seed's in mr-cnn, the next's in mr-cnn-seed1 with config.seed one higher; the row's training time is
  every fold's epochs' seconds as their metrics.jsonl records hold them."""
  root, results = quick_run
  cnn = next(r for r in results["rows"] if r["model"] == "cnn")
  seed_dirs = [root / "runs" / "mr-cnn", root / "runs" / "mr-cnn-seed1"]
  assert [json.loads((d / "fold-1" / "config.json").read_text())["seed"] for d in seed_dirs] == [0, 1]
  folds = [fold for d in seed_dirs for fold in sorted(d.glob("fold-*"))]
  assert [f.name for f in folds] == ["fold-1", "fold-2"] * SEEDS and not cnn["resumed"] and cnn["seeds"] == SEEDS
  epoch_seconds = [json.loads(line)["epoch_seconds"] for fold in folds
                   for line in (fold / "metrics.jsonl").read_text().splitlines() if "epoch_seconds" in line]
  assert len(epoch_seconds) == SEEDS * datasets.QUICK_FOLDS * datasets.QUICK_EPOCHS
  assert cnn["train_s"] == pytest.approx(sum(epoch_seconds)) and cnn["wall_s"] > cnn["train_s"]
  records = [[json.loads(line) for line in (fold / "metrics.jsonl").read_text().splitlines()] for fold in folds]
  assert cnn["run_accuracies"] == [[r for r in fold if "test_accuracy" in r][-1]["test_accuracy"] for fold in records]


def test_quick_run_writes_the_report_with_every_target(quick_run):
  root, results = quick_run
  output_dir = root / "out"
  targets = {t["target"]: t for t in results["targets"]}
  mr = targets["Kim's CNN-rand on mr: within 1 point of his 76.1 (or above)"]
  cnn = next(r for r in results["rows"] if r["model"] == "cnn")
  assert mr["measured"] == report.percent(cnn) and mr["met"] == (100 * cnn["accuracy"] >= 75.1)
  assert targets["Kim's CNN-rand on trec: within 1 point of his 91.2 (or above)"]["met"] is None
  assert targets["Kim's CNN training examples/s >= 1.5x PyTorch's"]["measured"].endswith("x")
  stem = output_dir / f"classify-{results['machine']['name']}-quick"
  text = stem.with_suffix(".md").read_text()
  assert "| mr | nbsvm | 100.0 ± 0.0 | 79.4 (NBSVM-bi) | 1.000 | 2 |" in text
  assert "## Kim's CNN: lm_jax vs PyTorch" in text and "## Targets" in text
  if importlib.util.find_spec("matplotlib") is not None:
    assert stem.with_suffix(".png").stat().st_size > 0


def workers_of(root: Path) -> list[int]:
  """The benchmark workers running on `root`'s corpus (their command line holds its path)."""
  found = []
  for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
    try:
      args = cmdline.read_bytes().split(b"\0")
    except OSError:  # ended meanwhile
      continue
    if b"benchmarks.common.worker" in args and str(root).encode() in b" ".join(args):
      found.append(int(cmdline.parent.name))
  return found


def epoch_numbers(fold: Path) -> list[int]:
  return [int(json.loads(line)["epoch"]) for line in (fold / "metrics.jsonl").read_text().splitlines()
          if "epoch_seconds" in line]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc; PDEATHSIG is Linux's")
def test_a_stopped_benchmark_leaves_no_worker_and_the_same_command_continues_its_run(tmp_path):
  """SIGKILL: the worker gets SIGTERM, checkpoints and ends. SIGTERM: passed on to the worker, whose run stops at a
  checkpoint; the benchmark says so in one line, exit 143. The same command then finishes the run where it stopped:
  each epoch once."""
  write_mr(tmp_path / "mr")
  fold = tmp_path / "runs" / "mr-cnn" / "fold-1"
  command = [sys.executable, "-m", "benchmarks.classification", "--quick", "--datasets=mr", "--models=cnn",
             "--parts=accuracy", "--epochs=40", f"--data_root={tmp_path}", f"--runs_dir={tmp_path / 'runs'}",
             f"--output_dir={tmp_path / 'out'}"]

  def start_and_stop(signal_number: int) -> tuple[int, str]:
    benchmark = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = len(epoch_numbers(fold)) if (fold / "metrics.jsonl").exists() else 0
    wait_until(lambda: (fold / "metrics.jsonl").exists() and len(epoch_numbers(fold)) > done, "an epoch ends",
               timeout_s=120)
    benchmark.send_signal(signal_number)
    _, stderr = benchmark.communicate(timeout=120)
    wait_until(lambda: not workers_of(tmp_path), "the worker has ended", timeout_s=120)
    return benchmark.returncode, stderr

  status, _ = start_and_stop(signal.SIGKILL)
  assert status == -signal.SIGKILL
  status, stderr = start_and_stop(signal.SIGTERM)
  assert status == 143 and "Traceback" not in stderr, stderr[-3000:]
  assert re.search(rf"^classification: stopped by SIGTERM at .* \(step \d+\) with a checkpoint in {fold}/checkpoints/"
                   r"latest; the same benchmark command continues it\n\Z", stderr, re.M), stderr[-3000:]
  assert not (tmp_path / "out").exists() and len(epoch_numbers(fold)) < 40

  subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
  assert epoch_numbers(fold) == list(range(1, 41))
  (report_json,) = (tmp_path / "out").glob("*.json")
  (row,) = json.loads(report_json.read_text())["rows"]
  assert row["resumed"] and row["runs"] == datasets.QUICK_FOLDS
