"""The GPU check without a GPU: benchmarks/gpu/check.sh's dry run end to end (CI runs it, so the script cannot rot
while no GPU is lent), and the time budget's bookkeeping. No timed assertions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import pytest

from benchmarks.common.worker import REPO
from benchmarks.gpu.measurements import step_time_configs
from benchmarks.step_time import measure, suite
from benchmarks.step_time.shapes import QUICK_VOCAB, make_shape


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[str, dict, str]:
  if importlib.util.find_spec("torch") is None:
    pytest.skip("PyTorch is not installed; every benchmark figure is relative to it")
  out = tmp_path_factory.mktemp("out")
  env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable}
  done = subprocess.run(["bash", "benchmarks/gpu/check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stdout[-3000:]
  (json_path,) = (out / "benchmarks" / "results").glob("gpu-*-quick.json")
  return str(out), json.loads(json_path.read_text()), (out / "check.log").read_text()


def test_dry_run_steps_in_order_with_the_tests_collected(dry_run):
  _, results, log = dry_run
  steps = [line.split(": ", 1)[1].split(":")[0] for line in log.splitlines() if line.startswith("== ")]
  assert steps == ["install", "devices and versions", "tests", "measurements", "done (exit 0)"]
  assert "jax.devices(): [CpuDevice(id=0)]" in log
  assert results["tests"].startswith("dry run: ") and " tests collected" in results["tests"]


def test_dry_run_checks_the_cudnn_layer_against_the_scan(dry_run):
  _, results, _ = dry_run
  (row,) = results["cudnn"]
  assert row["size"] == "quick" and row["train_steps_compared"] == 20 and row["passed"]
  for name, error in row["errors"].items():
    limit = row["tolerances"]["logits" if name.startswith(("logits", "state")) else "training"]
    assert 0 < error <= limit, name  # > 0: two computations were compared, not one with itself
  assert all(math.isfinite(ms) and ms > 0 for ms in row["train_ms"].values())


def test_dry_run_measures_the_awd_config_and_the_step_time_suite_in_both_frameworks(dry_run):
  out, results, _ = dry_run
  assert results["awd"]["config"]["model"]["wdrop"] == 0.5 and results["awd"]["config"]["bptt"] == 8
  for run in results["awd"]["runs"].values():
    assert math.isfinite(run["train_ms"]) and run["train_ms"] > 0
  assert set(results["awd"]["runs"]) == {"lm_jax", "pytorch"}
  assert [(c["model"], c["size"], c["vocab"]) for c in results["configs"]][0] == ("lstm", "quick", QUICK_VOCAB)
  assert results["unmeasured"] == []
  for config in results["configs"]:
    assert set(config["runs"]) == {"lm_jax", "pytorch"} and config["median_ratio"]["train"] > 0
  # The step-time suite's rnn workload in both frameworks (its own --quick self-test runs the transformer).
  assert results["configs"][0]["median_ratio"]["recurrence_forward"] > 0
  stem = os.path.join(out, "benchmarks", "results", f"gpu-{results['machine']['name']}-quick")
  text = open(stem + ".md").read()
  for heading in ("## Tests", "## cuDNN LSTM backend", "## AWD-LSTM config", "## Training step",
                  "## Recurrence forward"):
    assert heading in text
  if importlib.util.find_spec("matplotlib") is not None:
    assert os.path.getsize(stem + ".png") > 0


def test_past_the_deadline_no_worker_starts_and_each_config_is_listed(monkeypatch):
  monkeypatch.setattr(suite, "measure_together", lambda *args: pytest.fail("a worker started past the deadline"))
  machine = {"bfloat16_support": None, "bandwidth_gb_per_s": 1.0}
  assert step_time_configs(machine, [], deadline=time.time(), dry_run=True) == ([], ["lstm quick V500 float32"])
  shape = dataclasses.asdict(make_shape("lstm", "quick", QUICK_VOCAB, "float32", 20.0, 0.25))
  monkeypatch.setattr(measure, "run", lambda *args: pytest.fail("a config was measured past the deadline"))
  assert measure.run_many("lm_jax", [shape, shape], deadline=time.time() - 1) == []
