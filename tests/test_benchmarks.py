"""The benchmark suite: the FLOP count by hand, and one `--quick` run end to end (no timed assertions)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.flops import train_step_flops
from benchmarks.shapes import make_shape
from lm_jax.models.cells import CELLS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("rnn_tanh", 1), ("rnn_relu", 1)])
def test_train_step_flops_by_hand(cell, gates):
  shape = make_shape(cell, "quick", lr=20.0, clip=0.25)  # 2 layers of 32, V 500, B 4, T 8
  tokens = 4 * 8
  per_layer = 2 * tokens * 32 * gates * 32 + 2 * tokens * 32 * gates * 32  # input projection + recurrent
  decoder = 2 * tokens * 32 * 500
  assert train_step_flops(shape) == 3 * (2 * per_layer + decoder)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
  if importlib.util.find_spec("torch") is None:
    pytest.skip("PyTorch is not installed; every benchmark figure is relative to it")
  output_dir = tmp_path_factory.mktemp("bench")
  subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--quick", f"--output_dir={output_dir}"],
                 cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=600)
  (json_path,) = output_dir.glob("*.json")
  return output_dir, json.loads(json_path.read_text())


def test_quick_run_measures_every_cell_in_both_frameworks(quick_run):
  _, results = quick_run
  assert sorted(c["cell"] for c in results["configs"]) == sorted(CELLS)
  for config in results["configs"]:
    for framework in ("lm_jax", "pytorch"):
      (run,) = config["runs"][framework]
      for key in ("train_ms", "train_tokens_per_s", "eval_tokens_per_s", "generate_words_per_s"):
        assert math.isfinite(run[key]) and run[key] > 0, (config["cell"], framework, key)
    assert config["train_step_flops"] == train_step_flops(make_shape(config["cell"], "quick", lr=20.0, clip=0.25))


def test_quick_run_compiles_the_train_step_once(quick_run):
  _, results = quick_run
  for config in results["configs"]:
    for run in config["runs"]["lm_jax"]:
      # At least one: a counter that never counts (0 == 0 == 0) would pass the equality alone.
      assert 1 <= run["compilations_after_first"] == run["compilations_after_warmup"] == run["compilations_at_end"]


def test_quick_run_writes_the_report(quick_run):
  output_dir, results = quick_run
  stem = output_dir / f"{results['machine']['name']}-quick"
  assert "| lstm | quick |" in stem.with_suffix(".md").read_text()
  if importlib.util.find_spec("matplotlib") is not None:
    assert stem.with_suffix(".png").stat().st_size > 0
