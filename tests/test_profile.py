"""The step profile (lm_jax/profile.py) and lm-jax-profile. The values are timings, so the tests check the
parts and the accounting (the parts and 'rest' add up to the step), never a speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lm_jax import loss, optim, steps
from lm_jax.data.batching import put_on_device
from lm_jax.models.rnn_model import RNNModel
from lm_jax.profile import profile_step, random_tokens
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]
LAYER_PARTS = ["layer_0_forward", "layer_0_backward", "layer_1_forward", "layer_1_backward"]
OTHER_PARTS = ["decoder_matmuls", "softmax_passes", "optimiser", "host_overhead", "rest"]
PARTS = ["embedding"] + LAYER_PARTS + OTHER_PARTS  # a 2-layer model's


def test_parts_and_rest_add_up_to_the_step():
  config = tiny_config()
  model = RNNModel(vocab_size=50, cell="lstm", emsize=8, nhid=12, nlayers=1, dropout=0.2)
  optimizer = optim.make_optimizer(config.optim)
  state = steps.TrainState.create(model, optimizer, seed=0, batch_size=4)
  split = put_on_device(random_tokens(50, batch_size=4, bptt=5, windows=2), 4, 5)
  profile = profile_step(model, optimizer, state, steps.make_train_step(model, optimizer, 5), split, bptt=5, calls=2)

  parts = ["embedding"] + LAYER_PARTS[:2] + OTHER_PARTS
  assert list(profile.parts_ms) == parts
  assert profile.step_ms > 0
  assert sum(profile.parts_ms.values()) == pytest.approx(profile.step_ms, rel=1e-9)
  assert sum(profile.percent.values()) == pytest.approx(100.0)
  assert profile.per_time_step_ms == pytest.approx({part: profile.parts_ms[part] / 5 for part in LAYER_PARTS[:2]})
  table = profile.table()
  for part in parts:
    assert f"\n{part} " in table


def test_awd_parts_and_the_matmul_flops_counted_by_hand():
  # AWD-LSTM: every mask kind and both regularisers, so each of its parts is timed apart from `rest`.
  config = tiny_config()
  config.update(ar_alpha=2.0, tar_beta=1.0)
  model = RNNModel(vocab_size=50, cell="lstm", emsize=8, nhid=12, nlayers=2, tied=True, locked_dropout=True,
                   dropout=0.4, dropouti=0.3, dropouth=0.2, dropoute=0.1, wdrop=0.5)
  optimizer = optim.make_optimizer(config.optim)
  state = steps.TrainState.create(model, optimizer, seed=0, batch_size=4)
  split = put_on_device(random_tokens(50, batch_size=4, bptt=5, windows=2), 4, 5)
  terms = loss.regularisers(config)
  train_step = steps.make_train_step(model, optimizer, 5, terms=terms)
  profile = profile_step(model, optimizer, state, train_step, split, bptt=5, calls=1, terms=terms, ceiling_gflops=10.0)

  assert list(profile.parts_ms) == (["embedding", "dropout_masks", "weight_drop", "locked_dropout"] + LAYER_PARTS +
                                    ["decoder_matmuls", "softmax_passes", "regularisers"] + OTHER_PARTS[2:])
  assert sum(profile.parts_ms.values()) == pytest.approx(profile.step_ms, rel=1e-9)
  # T*B = 20 rows. Layer 0: x [20, 8] and h [20, 12] times [*, 48] (4 gates of 12); layer 1 (tied: 8 units):
  # [20, 12] and [20, 8] times [*, 32]; the backward twice each; the decoder 3 products of [20, 8] x [8, 50].
  assert profile.flops == {"layer_0_forward": 2 * 20 * (8 + 12) * 48, "layer_0_backward": 4 * 20 * (8 + 12) * 48,
                           "layer_1_forward": 2 * 20 * (12 + 8) * 32, "layer_1_backward": 4 * 20 * (12 + 8) * 32,
                           "decoder_matmuls": 3 * 2 * 20 * 8 * 50}
  for part, flops in profile.flops.items():
    if profile.parts_ms[part] > 0:
      assert profile.gflops[part] == pytest.approx(flops / (profile.parts_ms[part] / 1000) / 1e9)
  assert "GFLOP/s (ceiling 10.0)" in profile.table()


def _profile_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "lm_jax.cli.profile", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)


TINY_CONFIG = """
from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.data.source = "synthetic"
  c.data.synthetic.update(vocab_size=200, num_classes=8, train_tokens=12_000, valid_tokens=2_000, test_tokens=2_000)
  c.model.update(cell="rnn_tanh", emsize=8, nhid=8, nlayers=2, dropout=0.0)
  c.update(batch_size=4, bptt=5)
  return c
"""


def test_cli_prints_the_table_and_writes_the_bar_chart(tmp_path):
  pytest.importorskip("matplotlib", reason="the bar chart needs matplotlib")
  config_file = tmp_path / "tiny.py"
  config_file.write_text(TINY_CONFIG)
  result = _profile_cli(f"--config={config_file}", "--steps=1", f"--plot={tmp_path / 'profile.png'}")
  assert result.returncode == 0, result.stderr
  assert "the synthetic corpus's" in result.stdout
  rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines() if line.split()}
  ms = {part: float(rows[part][0]) for part in PARTS + ["step"]}
  percent = {part: float(rows[part][1].rstrip("%")) for part in PARTS + ["step"]}
  # The printed parts, rounded to 0.01 ms and 0.1%, add up to the printed step.
  assert sum(ms[part] for part in PARTS) == pytest.approx(ms["step"], abs=0.01 * len(PARTS))
  assert sum(percent[part] for part in PARTS) == pytest.approx(percent["step"], abs=0.1 * len(PARTS))
  assert (tmp_path / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_the_transformer_and_a_bad_plot_path_in_one_line_writing_nothing(tmp_path):
  result = _profile_cli("--config=configs/wt2_transformer.py", f"--plot={tmp_path / 'profile.png'}")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "profile.py: error: the time profile covers the rnn family only, not kind=transformer; profile an rnn config"]
  result = _profile_cli("--config=configs/default.py", f"--plot={tmp_path / 'missing' / 'profile.png'}")
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
  assert "does not exist" in result.stderr
  assert list(tmp_path.iterdir()) == []
