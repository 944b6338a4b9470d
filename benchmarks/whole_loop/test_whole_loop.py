"""The whole-loop benchmark: its window arithmetic and ratios by hand, the PyTorch side's corpus against lm_jax's,
a bad --data_root as one line, and one `--quick` run end to end (no timed assertions)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lm_jax.config import reference_config
from lm_jax.data.batching import window_bounds
from lm_jax.data.sources import load_corpus
from lm_jax.data.synthetic import generate_synthetic
from lm_jax.errors import UserError

from benchmarks.common.worker import REPO
from benchmarks.conftest import quick_benchmark
from benchmarks.whole_loop import report as loop_report
from benchmarks.whole_loop.jax_loop import LogLines

NEEDS_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed; the PyTorch side of the benchmark needs it")


@pytest.mark.parametrize("train_tokens, full_windows", [
    (929_589, 1327),    # PTB: 46,479 rows; windows start every 35 rows, the 1328th has 33 steps
    (2_088_628, 2983),  # WikiText-2: 104,431 rows; the 2984th window has 25 steps
    (20 * 36, 1),       # 36 rows: exactly one window of 35 inputs and their 35 targets
    (20 * 36 - 1, 0),   # 35 rows: the only window has 34 steps
])
def test_full_windows_by_hand_and_as_lm_jax_cuts_them(train_tokens, full_windows):
  assert loop_report.whole_windows(train_tokens, batch=20, bptt=35) == full_windows
  rows = train_tokens // 20
  assert sum(length == 35 for _, length in window_bounds(rows, 35)) == full_windows


def test_timed_windows_must_be_full_windows_of_the_first_epoch():
  # PTB: 1327 full windows, so 25 warm-up windows leave room for 1302 timed ones of 20 x 35 tokens.
  assert loop_report.timed_tokens("ptb", 929_589, 20, 35, warmup=25, windows=1302) == 1302 * 700
  with pytest.raises(UserError, match="ptb's first epoch has 1327 full windows of 35 at batch 20, fewer than "
                                      "--warmup . --windows = 1328; lower --windows or --warmup"):
    loop_report.timed_tokens("ptb", 929_589, 20, 35, warmup=25, windows=1303)


def test_speedups_rates_and_medians_by_hand():
  runs = {"lm_jax": [{"timed_s": 2.0, "load_s": 1.0}, {"timed_s": 1.0, "load_s": 3.0}, {"timed_s": 4.0, "load_s": 2.0}],
          "pytorch": [{"timed_s": 3.0, "load_s": 5.0}, {"timed_s": 2.5, "load_s": 6.0}, {"timed_s": 4.4, "load_s": 4.0}]}
  config = reference_config().to_dict()
  c = loop_report.summarise("ptb", config, 929_589, windows=100, tokens=70_000, runs=runs)
  # Each pair's speedup is PyTorch's time over lm_jax's for the same windows.
  np.testing.assert_allclose(c["ratios"], [1.5, 2.5, 1.1])
  assert c["median_ratio"] == pytest.approx(1.5)
  np.testing.assert_allclose([r["ms_per_window"] for r in c["runs"]["lm_jax"]], [20.0, 10.0, 40.0])
  np.testing.assert_allclose([r["tokens_per_s"] for r in c["runs"]["pytorch"]], [70_000 / 3.0, 28_000.0, 70_000 / 4.4])
  assert c["median"]["lm_jax"]["ms_per_window"] == pytest.approx(20.0)
  assert c["median"]["pytorch"]["tokens_per_s"] == pytest.approx(70_000 / 3.0)
  assert c["median"]["pytorch"]["load_s"] == 5.0
  (target,) = loop_report.targets([c])
  assert (target["measured"], target["met"]) == ("1.50x", True)
  assert loop_report.targets([{**c, "median_ratio": 1.39, "dataset": "wikitext-2"}])[0]["met"] is False


def test_log_lines_are_counted_on_stdout_and_stderr_and_passed_on(capsys):
  line = "| epoch   1 |   200/ 2983 batches | lr 20 | ms/batch 61.02 | loss  7.05 | ppl  1152.39"
  with LogLines() as log_lines:
    print(line + "\n| first train step of the epoch, compilation included: 3.1s")
    print(line.replace("200/", "400/"), file=sys.stderr, end="")
    sys.stderr.write("\n")
  assert log_lines.count == 2
  assert capsys.readouterr() == (line + "\n| first train step of the epoch, compilation included: 3.1s\n",
                                 line.replace("200/", "400/") + "\n")


def write_corpus(directory: Path) -> None:
  """A tiny corpus in the reference's layout: 6,000 training tokens make 8 full windows at batch 20, bptt 35."""
  splits = generate_synthetic(seed=0, vocab_size=200, num_classes=8, train_tokens=6000, valid_tokens=600,
                              test_tokens=600)
  directory.mkdir(parents=True)
  for split in ("train", "valid", "test"):
    (directory / f"{split}.txt").write_text("".join(line + "\n" for line in splits[split].lines))


@NEEDS_TORCH
def test_the_pytorch_side_reads_the_corpus_lm_jax_reads(tmp_path):
  from torch_reference.word_language_model import read_corpus

  write_corpus(tmp_path / "ptb")
  config = reference_config()
  config.data.dir = str(tmp_path / "ptb")
  corpus = load_corpus(config.data)
  ids, vocab_size = read_corpus(str(tmp_path / "ptb"))
  assert vocab_size == len(corpus.vocab)
  for split, split_ids in ids.items():
    np.testing.assert_array_equal(split_ids.numpy(), corpus.ids[split])


def test_a_missing_corpus_is_one_line_and_writes_nothing(tmp_path):
  done = subprocess.run([sys.executable, "-m", "benchmarks.whole_loop", f"--data_root={tmp_path}", "--datasets=ptb",
                         f"--output_dir={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2
  assert done.stderr.strip() == (f"whole_loop: error: no ptb corpus: {tmp_path / 'ptb'} is not a directory; pass "
                                 "--data_root=DIR holding ptb/train.txt, valid.txt and test.txt, or leave ptb out of "
                                 "--datasets")
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
  root = tmp_path_factory.mktemp("whole_loop")
  write_corpus(root / "ptb")
  return root / "out", quick_benchmark("whole_loop", root / "out", "--datasets=ptb", f"--data_root={root}")


def test_quick_run_times_the_same_windows_in_both_loops(quick_run):
  _, results = quick_run
  (config,) = results["configs"]
  assert (config["dataset"], config["cell"], config["windows"], config["timed_tokens"]) == ("ptb", "lstm", 4, 4 * 700)
  for framework in ("lm_jax", "pytorch"):
    (run,) = config["runs"][framework]
    for key in ("load_s", "warmup_s", "timed_s"):
      assert math.isfinite(run[key]) and run[key] > 0, (framework, key)
    assert run["ms_per_window"] == pytest.approx(1000 * run["timed_s"] / 4)
    # Windows 2..5 (0-based) at --quick's log_interval 2: lm_jax logs after its 4th and 6th window, main.py after
    # batches 2 and 4; either way two log lines fall in the timed windows.
    assert run["log_lines"] == 2, framework
  assert config["ratios"] == [pytest.approx(config["runs"]["pytorch"][0]["timed_s"] / config["runs"]["lm_jax"][0]["timed_s"])]


def test_quick_run_writes_the_report(quick_run):
  output_dir, results = quick_run
  stem = output_dir / f"whole-loop-{results['machine']['name']}-quick"
  assert "| ptb | lstm | 4 |" in stem.with_suffix(".md").read_text()
  if importlib.util.find_spec("matplotlib") is not None:
    assert stem.with_suffix(".png").stat().st_size > 0
