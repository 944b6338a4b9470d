"""The benchmark suite: FLOPs, bytes per generated word, ratios and targets against hand computations, and one
`--quick` run end to end (no timed assertions)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import machine
from benchmarks.common.worker import REPO
from benchmarks.conftest import quick_benchmark
from benchmarks.step_time import summary
from benchmarks.step_time.flops import generated_word_flops, train_step_flops
from benchmarks.step_time.measure import generate_key
from benchmarks.step_time.roofline import bytes_per_word, roofline_words_per_s
from benchmarks.step_time.shapes import QUICK_VOCAB, make_shape


def quick_shape(model: str, dtype: str = "float32", size: str = "quick"):
  return make_shape(model, size, QUICK_VOCAB, dtype, lr=20.0, clip=0.25)  # quick: 2 layers of 32, V 500, B 4, T 8


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("rnn_tanh", 1), ("rnn_relu", 1)])
def test_train_step_flops_by_hand(cell, gates):
  tokens = 4 * 8
  per_layer = 2 * tokens * 32 * gates * 32 + 2 * tokens * 32 * gates * 32  # input projection + recurrent
  decoder = 2 * tokens * 32 * 500
  assert train_step_flops(quick_shape(cell)) == 3 * (2 * per_layer + decoder)


def test_transformer_train_step_flops_by_hand():
  tokens = 4 * 8  # E = F = 32, B 4, T 8
  qkv, out, feedforward = 2 * tokens * 32 * 96, 2 * tokens * 32 * 32, 2 * (2 * tokens * 32 * 32)
  scores = weighted_values = 4 * (2 * 8 * 8 * 32)  # per sequence T x T x E, 4 sequences
  decoder = 2 * tokens * 32 * 500
  assert train_step_flops(quick_shape("transformer")) == 3 * (2 * (qkv + out + feedforward + scores + weighted_values)
                                                              + decoder)
  assert not make_shape("transformer", "medium", 10_000, "float32", lr=20.0, clip=0.25).tied  # as the reference


def test_bytes_per_generated_word_by_hand():
  lstm_layer = 32 * 128 + 32 * 128 + 128 + 128  # W_ih, W_hh, b_ih, b_hh (4 gates of 32)
  decoder = 500 * 32 + 500
  assert bytes_per_word(quick_shape("lstm")) == 4 * (32 + 2 * lstm_layer + decoder)
  # Tied (medium): the decoder is the embedding, still read whole, so the same count.
  medium = make_shape("gru", "medium", 10_000, "bfloat16", lr=20.0, clip=0.25)
  assert bytes_per_word(medium) == 4 * (650 + 2 * (2 * 650 * 1950 + 2 * 1950) + 10_000 * 650 + 10_000)
  # Transformer: weights, and the key/value cache of on average (10 words + 1) / 2 positions per layer.
  weights = (32 * 96 + 96) + (32 * 32 + 32) + (32 * 32 + 32) + (32 * 32 + 32) + 4 * 32
  cache = 2 * 32 * 5.5
  assert bytes_per_word(quick_shape("transformer")) == pytest.approx(4 * (32 + 2 * (weights + cache) + 64 + decoder))
  assert roofline_words_per_s(quick_shape("lstm"), 2.0) == pytest.approx(2e9 / (4 * (32 + 2 * lstm_layer + decoder)))


def test_flops_per_generated_word_by_hand():
  decoder = 2 * 32 * 500  # one row through [32] x [32, 500]
  assert generated_word_flops(quick_shape("gru")) == 2 * (2 * 32 * 96 + 2 * 32 * 96) + decoder
  # Transformer: the projections of one row, and its query over the cache's (10 words + 1) / 2 positions.
  projections = 2 * (32 * 96 + 32 * 32 + 2 * 32 * 32)
  attention = 2 * (2 * 5.5 * 32)
  assert generated_word_flops(quick_shape("transformer")) == pytest.approx(2 * (projections + attention) + decoder)


def test_bfloat16_support_from_the_cpu_flags(monkeypatch):
  monkeypatch.setattr(machine, "_cpuinfo", lambda field: "fpu avx512f avx512_bf16 amx_tile amx_bf16")
  assert machine.bfloat16_support("cpu") == "CPU flags amx_bf16, avx512_bf16"
  monkeypatch.setattr(machine, "_cpuinfo", lambda field: "fpu avx512f avx512_vnni")
  assert machine.bfloat16_support("cpu") is None
  assert machine.bfloat16_support("gpu") == "a gpu accelerator"


def fake_run(train: float = 100.0, eval_: float = 100.0, n1: float = 10.0, n32: float | None = None,
             forward: float | None = None, compile_s: float = 1.0, programs: tuple[int, int, int] = (1, 1, 1)) -> dict:
  """A worker's result with the given throughputs (tokens/s, words/s); PyTorch's have no N = 32."""
  run = {"device": "cpu", "train_ms": 1000 * 32 / train, "train_tokens_per_s": train, "compile_s": compile_s,
         "eval_tokens_per_s": eval_, "eval_compile_s": 0.1, generate_key(1): n1, generate_key(1, "compile_s"): 0.1,
         "recurrence_forward_tokens_per_s": forward, "peak_rss_mib": 300.0, "device_peak_mib": None,
         **dict(zip(summary.COMPILATION_COUNTS, programs))}
  if n32 is not None:
    run.update({generate_key(32): n32, generate_key(32, "compile_s"): 0.2})
  return run


def test_summarise_pairs_each_round_and_takes_medians():
  shape = quick_shape("lstm")
  runs = {"lm_jax": [fake_run(train=300, eval_=50, n1=10, n32=200, forward=40),
                     fake_run(train=200, eval_=90, n1=30, n32=900, forward=20)],
          "pytorch": [fake_run(train=100, eval_=25, n1=5, forward=20), fake_run(train=100, eval_=30, n1=10, forward=20)]}
  config = summary.summarise(shape, runs, bandwidth_gb_per_s=1.0)
  assert config["ratios"] == {"train": [3.0, 2.0], "eval": [2.0, 3.0], "generate": [2.0, 3.0],
                              "recurrence_forward": [2.0, 1.0]}
  assert config["median_ratio"] == {"train": 2.5, "eval": 2.5, "generate": 2.5, "recurrence_forward": 1.5}
  assert config["generation"]["batched_over_single"] == [20.0, 30.0]
  assert config["generation"]["median_batched_over_single"] == 25.0
  roofline = 1e9 / bytes_per_word(shape)
  assert config["generation"]["roofline_over_single"] == pytest.approx(roofline / 20.0)  # median N=1: 20 words/s
  # The median step time: of 32 tokens at 300 and 200 tokens/s, (0.10667 s + 0.16 s) / 2.
  assert config["gflops_per_s"]["lm_jax"] == pytest.approx(train_step_flops(shape) / (0.4 / 3) / 1e9)


def test_summarise_leaves_out_the_transformers_recurrence_forward():
  runs = {"lm_jax": [fake_run(n32=100)], "pytorch": [fake_run()]}
  config = summary.summarise(quick_shape("transformer"), runs, bandwidth_gb_per_s=1.0)
  assert set(config["ratios"]) == {"train", "eval", "generate"}


def summarised(model: str, size: str, dtype: str = "float32", train: float = 2.0, eval_: float = 2.0,
               batched: float = 10.0, roofline_gap: float = 1.0, forward: float | None = None, compile_s: float = 1.0,
               programs: tuple[int, int, int] = (1, 1, 1)) -> dict:
  """A config whose median ratios (PyTorch at 100 tokens/s, 10 words/s) and roofline gap are the given values."""
  shape = make_shape(model, size, 10_000, dtype, lr=20.0, clip=0.25)
  n1 = roofline_words_per_s(shape, 1.0) / roofline_gap
  jax_run = fake_run(100 * train, 100 * eval_, n1, batched * n1, None if forward is None else 100 * forward,
                     compile_s, programs)
  torch_run = fake_run(100, 100, 10, forward=None if forward is None else 100)
  return summary.summarise(shape, {"lm_jax": [jax_run], "pytorch": [torch_run]}, bandwidth_gb_per_s=1.0)


def test_targets_met_at_their_thresholds():
  configs = [summarised("lstm", "small", train=1.5, eval_=2.0, forward=1.0, batched=10.0, roofline_gap=1.5,
                        compile_s=10.0),
             summarised("gru", "medium", "bfloat16", train=1.3),
             summarised("transformer", "small", train=1.0)]  # no cell: outside the train and recurrence targets
  assert all(t["met"] for t in summary.targets(configs)), summary.targets(configs)
  (train_small, train_medium, _, forward, *_) = summary.targets(configs)
  assert train_small["measured"] == "lstm small V10,000 float32 1.50x"
  assert train_medium["measured"] == "gru medium V10,000 bfloat16 1.30x"
  assert forward["measured"] == "lstm small V10,000 float32 1.00x"


@pytest.mark.parametrize("miss, target", [
    (dict(model="lstm", size="small", train=1.49), 0),
    (dict(model="rnn_tanh", size="medium", train=1.29), 1),
    (dict(model="transformer", size="small", eval_=1.99), 2),
    (dict(model="gru", size="small", forward=0.99), 3),
    (dict(model="transformer", size="small", batched=9.9), 4),
    (dict(model="lstm", size="medium", roofline_gap=1.51), 5),
    (dict(model="lstm", size="small", compile_s=10.01), 6),
    (dict(model="lstm", size="small", programs=(1, 1, 2)), 7),
])
def test_each_target_missed_just_past_its_threshold(miss, target):
  configs = [summarised("lstm", "small", train=1.5, forward=1.0), summarised("lstm", "medium", train=1.3),
             summarised(**miss)]
  met = [t["met"] for t in summary.targets(configs)]
  assert met == [i != target for i in range(len(met))]


def test_targets_without_their_configs_are_not_measured():
  met = {t["target"]: t["met"] for t in summary.targets([summarised("transformer", "medium")])}
  assert [name for name, value in met.items() if value is None] == [
      name for name in met if name.startswith("train tokens/s") or name.startswith("recurrence forward")]


def test_bfloat16_speedups_pair_the_dtypes_of_each_model_size_and_vocabulary():
  configs = [summarised("lstm", "small", "float32", train=1.0), summarised("lstm", "small", "bfloat16", train=4.0),
             summarised("gru", "small", "float32")]  # no bfloat16 pair: no row
  (row,) = summary.dtype_speedups(configs)
  assert (row["model"], row["size"], row["vocab"]) == ("lstm", "small", 10_000)
  # fake_run's steps are of 32 tokens. lm_jax: at 100 vs 400 tokens/s, 320 vs 80 ms; PyTorch 320 ms in both.
  assert row["lm_jax"] == pytest.approx({"float32_ms": 320.0, "bfloat16_ms": 80.0, "bfloat16_speedup": 4.0})
  assert row["pytorch"]["bfloat16_speedup"] == pytest.approx(1.0)


@pytest.mark.parametrize("flag, message", [
    ("--vocabs=10000,33k", "--vocabs must be whole numbers >= 2 (got 10000,33k); pass e.g. --vocabs=10000,33278"),
    ("--dtypes=float16", "unknown dtypes float16; use some of float32, bfloat16"),
])
def test_bad_flags_are_one_line_errors(flag, message, tmp_path):
  done = subprocess.run([sys.executable, "-m", "benchmarks.step_time", flag, f"--output_dir={tmp_path / 'out'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].endswith(message) and "Traceback" not in done.stderr
  assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
  output_dir = tmp_path_factory.mktemp("bench")
  # The transformer in both dtypes: the rnn workload's paths run in benchmarks/gpu's dry run (its lstm config, in
  # both frameworks, through this suite), and each worker is a process compiling all its programs, so one model
  # here keeps CI short.
  return output_dir, quick_benchmark("step_time", output_dir, "--models=transformer", "--dtypes=float32,bfloat16")


def test_quick_run_measures_every_model_and_dtype_in_both_frameworks(quick_run):
  _, results = quick_run
  assert [(c["model"], c["vocab"], c["dtype"]) for c in results["configs"]] == [
      ("transformer", QUICK_VOCAB, "float32"), ("transformer", QUICK_VOCAB, "bfloat16")]
  for config in results["configs"]:
    for framework, samples in (("lm_jax", (1, 32)), ("pytorch", (1,))):
      (run,) = config["runs"][framework]
      keys = ["train_ms", "train_tokens_per_s", "eval_tokens_per_s", *map(generate_key, samples)]
      for key in keys + (["recurrence_forward_tokens_per_s"] if config["model"] == "gru" else []):
        assert math.isfinite(run[key]) and run[key] > 0, (config["model"], config["dtype"], framework, key)
      assert generate_key(32) in run if framework == "lm_jax" else generate_key(32) not in run
    assert config["train_step_flops"] == train_step_flops(quick_shape(config["model"], config["dtype"]))
    assert ("recurrence_forward" in config["ratios"]) == (config["model"] == "gru")
  assert [(row["model"], row["vocab"]) for row in results["dtype_speedups"]] == [("transformer", QUICK_VOCAB)]
  assert results["machine"]["bandwidth_gb_per_s"] > 0


def test_quick_run_compiles_the_train_step_once(quick_run):
  _, results = quick_run
  for config in results["configs"]:
    for run in config["runs"]["lm_jax"]:
      # At least one: a counter that never counts (0 == 0 == 0) would pass the equality alone.
      assert 1 <= run["compilations_after_first"] == run["compilations_after_warmup"] == run["compilations_at_end"]


def test_quick_run_writes_the_report(quick_run):
  output_dir, results = quick_run
  stem = output_dir / f"{results['machine']['name']}-quick"
  text = stem.with_suffix(".md").read_text()
  for row in ("| transformer | quick | 500 | float32 |", "| transformer | quick | 500 | bfloat16 |",
              "## bfloat16 against float32", "## Generation", "| N=32 / N=1 at the ceiling |"):
    assert row in text
  if importlib.util.find_spec("matplotlib") is not None:
    assert stem.with_suffix(".png").stat().st_size > 0
