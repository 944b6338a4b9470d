"""The cuDNN LSTM backend (lm_jax/models/cudnn_lstm.py) without a GPU: the flat weights in jax.experimental.rnn's
own layout, and the model around the kernel (packing, batch-first, sequence lengths, gradients, dropout) with the
kernel replaced by jax.experimental.rnn's reference, against the scan; its refusals, one line each. The kernel
itself is checked against the scan on a GPU by benchmarks/gpu/check.sh."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

from lm_jax import config as config_lib
from lm_jax.errors import UserError
from lm_jax.models import cudnn_lstm
from lm_jax.models.rnn_model import RNNModel
from tests.conftest import reference_training_losses, tiny_config, token_ids

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_GPU = pytest.mark.skipif(jax.default_backend() == "gpu", reason="the refusal for want of a GPU needs no GPU")
SCAN = dict(vocab_size=40, emsize=6, nhid=10, nlayers=2, dropout=0.3)


@pytest.fixture
def kernel_calls(monkeypatch) -> list[int]:
  """rnn.lstm replaced by its reference (no cuDNN here); the list grows by one per call traced."""
  calls = []

  def reference(*args, **kwargs):
    calls.append(1)
    return cudnn_lstm.reference_lstm(*args, **kwargs)

  monkeypatch.setattr(rnn, "lstm", reference)
  return calls


def test_flat_weights_are_pytorchs_matrices_in_jax_experimental_rnns_layout():
  normal = lambda *shape: np.random.default_rng(len(shape) + shape[0]).normal(size=shape).astype(np.float32)
  weights = {"w_ih": normal(3, 8), "w_hh": normal(2, 8), "b_ih": normal(8), "b_hh": normal(8)}
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(cudnn_lstm.cudnn_weights(weights), 3, 2, 1, False)
  # torch.nn.LSTM's weight_ih_l0 [4H, I] and weight_hh_l0 [4H, H] are the rnn family's x @ W matrices transposed.
  for unpacked, expected in ((w_ih, weights["w_ih"].T), (w_hh, weights["w_hh"].T), (b_ih, weights["b_ih"]),
                             (b_hh, weights["b_hh"])):
    np.testing.assert_array_equal(unpacked[0], expected)


def test_features_and_state_match_the_scan_on_a_short_window(kernel_calls):
  scan, cudnn = RNNModel(**SCAN), RNNModel(**SCAN, rnn_backend="cudnn")
  params = scan.init_params(1)
  tokens_TxB = jnp.asarray(np.random.default_rng(2).integers(0, 40, (7, 3)), jnp.int32)
  carry = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(3), x.shape), scan.init_carry(3))
  valid_T = jnp.arange(7) < 4  # three padding steps: the state after step 4 comes back
  expected, got = (jax.jit(m.features)(params, tokens_TxB, carry, valid_T) for m in (scan, cudnn))
  assert kernel_calls
  np.testing.assert_allclose(got.features_TxBxH[:4], expected.features_TxBxH[:4], rtol=1e-5, atol=1e-6)
  for got_state, expected_state in zip(jax.tree.leaves(got.carry), jax.tree.leaves(expected.carry)):
    np.testing.assert_allclose(got_state, expected_state, rtol=1e-5, atol=1e-6)


def test_training_with_dropout_matches_the_scan(kernel_calls):
  """Gradients through the packed weights, the same dropout masks between layers, the carry across windows."""
  config = tiny_config(**{"model.nhid": 10, "model.emsize": 10, "model.nlayers": 2, "model.dropout": 0.3,
                          "batch_size": 4, "bptt": 6})
  ids = token_ids(4 * 40, 30, seed=4)  # 40 rows: 6 full windows and one of 3 steps
  scan, cudnn = RNNModel(vocab_size=30, emsize=10, nhid=10, dropout=0.3), RNNModel(
      vocab_size=30, emsize=10, nhid=10, dropout=0.3, rnn_backend="cudnn")
  params = scan.init_params(5)
  expected_losses, expected_params = reference_training_losses(scan, params, config, ids)
  losses, trained = reference_training_losses(cudnn, params, config, ids)
  assert kernel_calls
  np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
  for name in expected_params:
    np.testing.assert_allclose(trained[name], expected_params[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("overrides, message", [
    ({"cell": "gru"}, "runs the LSTM cell only (got 'gru')"),
    ({"matmul_dtype": "bfloat16"}, "runs float32 only (got matmul_dtype 'bfloat16')"),
    ({"wdrop": 0.5}, "cannot apply weight drop (config.model.wdrop), a mask on W_hh inside the recurrence"),
    ({"locked_dropout": True}, "is not for AWD-LSTM's locked dropout (config.model.locked_dropout)"),
    pytest.param({}, "needs a GPU, and JAX runs on cpu here", marks=WITHOUT_GPU),
])
def test_cudnn_where_it_does_not_apply_is_one_line(overrides, message):
  config = tiny_config(**{f"model.{k}": v for k, v in {"rnn_backend": "cudnn", **overrides}.items()})
  with pytest.raises(UserError) as error:
    config_lib.validate(config)
  assert str(error.value) == f"config.model.rnn_backend='cudnn' {message}; pass --config.model.rnn_backend=scan"


def test_an_unknown_backend_is_one_line():
  with pytest.raises(UserError, match=r"^unknown config.model.rnn_backend 'cuda'; use one of scan, cudnn$"):
    config_lib.validate(tiny_config(**{"model.rnn_backend": "cuda"}))


@WITHOUT_GPU
def test_lm_jax_train_refuses_cudnn_on_a_cpu_and_writes_nothing(tmp_path):
  done = subprocess.run([sys.executable, "-m", "lm_jax.cli.train", "--config=configs/quickstart.py",
                         "--config.model.rnn_backend=cudnn", f"--workdir={tmp_path / 'run'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1] == ("train.py: error: config.model.rnn_backend='cudnn' needs a GPU, and "
                                                  "JAX runs on cpu here; pass --config.model.rnn_backend=scan")
  assert not (tmp_path / "run").exists()
