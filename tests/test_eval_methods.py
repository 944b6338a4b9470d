"""The evaluation-time methods against independent re-implementations of their formulas: the cache
pointer against pointer.py's per-token rule in float64 NumPy (and the PyTorch loop), dynamic evaluation
against dynamiceval.py's loop in float64 PyTorch; the plain evaluation reproduced with lambda 0 or lr 0;
no score reads a later token; bad input is one line."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from lm_jax import convert
from lm_jax.cache_pointer import CachePointer
from lm_jax.data.batching import batchify, put_on_device
from lm_jax.dynamic_eval import DynamicEval, gradient_statistics
from lm_jax.errors import UserError
from lm_jax.evaluate import Evaluator
from lm_jax.models.rnn_model import RNNModel

V, BPTT = 30, 7


def tiny_model(cell: str = "lstm") -> RNNModel:
  return RNNModel(vocab_size=V, cell=cell, emsize=10, nhid=12, nlayers=2, dropout=0.0)


def stream(n: int, seed: int = 0) -> np.ndarray:
  """Words that repeat at a distance, so the cache has something to find."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, V, n)
  repeat = rng.uniform(size=n) < 0.4
  ids[20:][repeat[20:]] = ids[:-20][repeat[20:]]
  return ids.astype(np.int32)


def column_features_and_logp(model, params, column_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """One pass over a whole column: the last layer's outputs and log_softmax of the logits, in float64."""
  out = model.features(params, column_T[:-1, None], model.init_carry(1))
  logits = np.asarray(model.logits(params, out.features_TxBxH), np.float64)[:, 0]
  logp = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) - logits.max(-1, keepdims=True)
  return np.asarray(out.features_TxBxH, np.float64)[:, 0], logp


def numpy_pointer_nll(h_TxH: np.ndarray, logp_TxV: np.ndarray, targets_T: np.ndarray, window: int, theta: float,
                      lam: float) -> np.ndarray:
  """pointer.py's rule, token by token in float64: at position t > window, softmax(theta <h_t, h_i>) over
  i in [t - window, t) puts its mass on the word after i; mixed (1 - lam) p_model + lam p_cache."""
  nll = np.empty(len(targets_T))
  for t in range(len(targets_T)):
    p_V = np.exp(logp_TxV[t])
    if t > window:
      logits = theta * h_TxH[t - window:t] @ h_TxH[t]
      attention = np.exp(logits - logits.max())
      attention /= attention.sum()
      one_hot_NxV = np.eye(logp_TxV.shape[1])[targets_T[t - window:t]]
      p_V = lam * attention @ one_hot_NxV + (1 - lam) * p_V
    with np.errstate(divide="ignore"):  # lam 1 and a target not in the cache: p 0, nll inf
      nll[t] = -np.log(p_V[targets_T[t]])
  return nll


@pytest.mark.parametrize("cell,theta,lam", [("lstm", 1.3, 0.3), ("gru", 0.0, 0.5), ("rnn_tanh", 2.0, 1.0)])
def test_cache_pointer_matches_the_float64_formula_per_token(cell, theta, lam):
  """Batch 1 (the reference's) and batch 3, where each column must score exactly as it would alone."""
  model = tiny_model(cell)
  params = model.init_params(1)
  ids = stream(3 * 61 + 2, seed=2)
  cache = CachePointer(window=13, theta=theta, lam=lam)
  for batch in (1, 3):
    got_TxB = Evaluator(model, BPTT).token_nll(params, put_on_device(ids, batch, BPTT), cache=cache)
    for b, column_T in enumerate(batchify(ids, batch).T):
      h_TxH, logp_TxV = column_features_and_logp(model, params, column_T)
      expected_T = numpy_pointer_nll(h_TxH, logp_TxV, column_T[1:], cache.window, theta, lam)
      np.testing.assert_allclose(got_TxB[:, b], expected_T, atol=1e-5, rtol=0)
      assert not np.allclose(expected_T, -np.take_along_axis(logp_TxV, column_T[1:, None], 1)[:, 0], atol=1e-3)


def test_cache_with_lambda_zero_is_the_plain_evaluation_exactly():
  model = tiny_model()
  params = model.init_params(0)
  split = put_on_device(stream(2 * 90), 2, BPTT)
  evaluator = Evaluator(model, BPTT)
  plain = evaluator.mean_nll(params, split)
  assert evaluator.evaluate(params, split, cache=CachePointer(10, 1.0, 0.0)).mean_nll == plain
  assert evaluator.evaluate(params, split, cache=CachePointer(10, 1.0, 0.2)).mean_nll != plain
  grid = evaluator.cache_search(params, split, 10, (0.5, 1.0), (0.0, 0.2))
  assert grid[0, 0] == grid[1, 0] == plain
  np.testing.assert_allclose(grid[1, 1], evaluator.evaluate(params, split, cache=CachePointer(10, 1.0, 0.2)).mean_nll,
                             rtol=1e-6)


def test_dynamic_evaluation_with_lr_zero_is_the_plain_evaluation_exactly():
  model = tiny_model()
  params = model.init_params(0)
  ids = stream(120)
  stats = gradient_statistics(model, params, put_on_device(ids, 4, 5), 5)
  split = put_on_device(ids, 1, 5)
  plain = Evaluator(model, 5).mean_nll(params, split)
  for dynamic in (DynamicEval(lr=0.0), DynamicEval(rule="sgd", lr=0.0)):
    assert Evaluator(model, BPTT).evaluate(params, split, dynamic=dynamic, stats=stats).mean_nll == plain
  assert Evaluator(model, BPTT).evaluate(params, split, dynamic=DynamicEval(lr=1e-3), stats=stats).mean_nll != plain


def changed_at(ids: np.ndarray, position: int) -> np.ndarray:
  changed = ids.copy()
  changed[position] = (ids[position] + 1) % V
  return changed


@pytest.mark.parametrize("methods", ["cache", "dynamic", "both"])
def test_no_score_reads_a_later_token(methods):
  """Changing token k changes no score of an earlier target (positions < k - 1), and does change the
  score of token k itself; for dynamic evaluation, k sits mid-segment."""
  model = tiny_model()
  params = model.init_params(4)
  ids = stream(160, seed=5)
  stats = gradient_statistics(model, params, put_on_device(ids, 4, 5), 5)
  kwargs = {"cache": CachePointer(12, 1.0, 0.3) if methods != "dynamic" else None,
            "dynamic": DynamicEval(lr=1e-3) if methods != "cache" else None, "stats": stats}
  evaluator = Evaluator(model, BPTT)
  before = evaluator.token_nll(params, put_on_device(ids, 1, BPTT), **kwargs)[:, 0]
  for k in (37, 101):
    after = evaluator.token_nll(params, put_on_device(changed_at(ids, k), 1, BPTT), **kwargs)[:, 0]
    np.testing.assert_array_equal(after[:k - 1], before[:k - 1])
    assert after[k - 1] != before[k - 1]


def test_bad_input_is_one_line_naming_the_fix():
  model = tiny_model()
  params = model.init_params(0)
  split = put_on_device(stream(40), 1, BPTT)
  evaluator = Evaluator(model, BPTT)
  cases = [(CachePointer(0, 1.0, 0.1), r"--cache_window must be > 0 \(got 0\)"),
           (CachePointer(10, 1.0, 1.5), r"--cache_lambda must be in \[0, 1\] \(got 1.5\)"),
           (CachePointer(10, 1.0, -0.1), r"--cache_lambda must be in \[0, 1\] \(got -0.1\)"),
           (CachePointer(10, -1.0, 0.1), r"--cache_theta must be >= 0 \(got -1.0\)"),
           (CachePointer(39, 1.0, 0.1), r"the given split has 39 positions per column, not more than --cache_window=39")]
  for cache, message in cases:
    with pytest.raises(UserError, match=message):
      evaluator.evaluate(params, split, cache=cache)
  with pytest.raises(UserError, match=r"--dynamic_lr must be >= 0"):
    evaluator.evaluate(params, split, dynamic=DynamicEval(rule="sgd", lr=-1.0))


# Against the PyTorch references (torch_reference/): dynamiceval.py's loop, and pointer.py's loop.

def torch_twin(cell: str, seed: int = 0):
  """A float64 PyTorch model with random weights and its lm_jax import (float32)."""
  torch = pytest.importorskip("torch")
  from torch_reference.word_language_model import TorchRNNModel
  torch.manual_seed(seed)
  reference = TorchRNNModel(cell, V, 10, 12, 2).double()
  for p in reference.parameters():
    torch.nn.init.uniform_(p, -0.4, 0.4)
  shape, params = convert.import_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()}, cell)
  return torch, reference, dataclasses.replace(shape, dropout=0.0), jax.tree.map(np.float32, params)


@pytest.mark.parametrize("cell,rule,lr", [("lstm", "rms", 2e-3), ("gru", "rms", 2e-3), ("lstm", "sgd", 0.5)])
def test_dynamic_evaluation_matches_the_float64_torch_loop_per_token(cell, rule, lr):
  torch, reference, model, params = torch_twin(cell)
  from torch_reference import dynamic_eval as torch_dynamic
  train_ids, test_ids = stream(4 * 40 + 1, seed=6), stream(93, seed=7)
  dynamic = DynamicEval(rule=rule, lr=lr, lamb=0.02, epsilon=1e-4, bptt=5)

  ms, gsum = torch_dynamic.gradient_statistics(reference, torch.from_numpy(batchify(train_ids, 4)).long(), 5)
  expected, _ = torch_dynamic.dynamic_token_nll(reference, torch.from_numpy(batchify(test_ids, 1)).long(), 5,
                                                lr, dynamic.lamb, dynamic.epsilon, ms if rule == "rms" else None,
                                                gsum, rule)
  stats = gradient_statistics(model, params, put_on_device(train_ids, 4, 5), 5)
  np.testing.assert_allclose(stats.ms_mean, gsum.item(), rtol=1e-5)
  got = Evaluator(model, BPTT).token_nll(params, put_on_device(test_ids, 1, 5), dynamic=dynamic, stats=stats)[:, 0]
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
  plain = Evaluator(model, 5).token_nll(params, put_on_device(test_ids, 1, 5), dynamic=dataclasses.replace(dynamic, lr=0.0),
                                        stats=stats)[:, 0]
  assert np.mean(np.abs(got - plain)) > 1e-2  # the updates matter at this lr


def test_cache_with_dynamic_evaluation_matches_the_torch_loop_and_the_float64_formula():
  """Both together: the dynamic pass's model scores (torch, float64) mixed with the cache over the
  features the adapted model produced, by the NumPy formula."""
  torch, reference, model, params = torch_twin("lstm", seed=3)
  from torch_reference import dynamic_eval as torch_dynamic
  train_ids, test_ids = stream(4 * 40 + 1, seed=8), stream(120, seed=9)
  dynamic, cache = DynamicEval(lr=2e-3, lamb=0.02, epsilon=1e-4, bptt=5), CachePointer(17, 0.8, 0.25)
  ms, gsum = torch_dynamic.gradient_statistics(reference, torch.from_numpy(batchify(train_ids, 4)).long(), 5)
  nll_T, h_TxH = torch_dynamic.dynamic_token_nll(reference, torch.from_numpy(batchify(test_ids, 1)).long(), 5,
                                                 dynamic.lr, dynamic.lamb, dynamic.epsilon, ms, gsum)
  # The model's distribution enters the mixture only through p_model(target), so a log-prob table holding
  # the target's entry alone feeds the same formula.
  targets_T = test_ids[1:]
  logp_TxV = np.full((len(targets_T), V), -np.inf)
  logp_TxV[np.arange(len(targets_T)), targets_T] = -np.asarray(nll_T)
  expected = numpy_pointer_nll(h_TxH.numpy(), logp_TxV, targets_T, cache.window, cache.theta, cache.lam)

  stats = gradient_statistics(model, params, put_on_device(train_ids, 4, 5), 5)
  got = Evaluator(model, BPTT).token_nll(params, put_on_device(test_ids, 1, 5), cache=cache, dynamic=dynamic,
                                         stats=stats)[:, 0]
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_cache_matches_the_torch_per_token_loop():
  torch, reference, model, params = torch_twin("lstm", seed=5)
  from torch_reference.cache_pointer import pointer_token_nll
  ids = stream(150, seed=10)
  cache = CachePointer(21, 0.7, 0.2)
  expected = pointer_token_nll(reference, torch.from_numpy(batchify(ids, 1)).long(), 40, cache.window, cache.theta,
                               cache.lam)
  got = Evaluator(model, BPTT).token_nll(params, put_on_device(ids, 1, BPTT), cache=cache)[:, 0]
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_cli_table_and_bad_input_one_line_each_nothing_written(tmp_path):
  from lm_jax.train import train_and_evaluate
  from tests.conftest import tiny_config
  from tests.test_cli import assert_one_line_error, lm_jax, snapshot

  workdir = tmp_path / "run"
  train_and_evaluate(tiny_config(epochs=1), str(workdir))
  before = snapshot(workdir)
  flag = f"--workdir={workdir}"
  assert_one_line_error(lm_jax("evaluate", flag, "--cache_window=0"), r"--cache_window must be > 0 \(got 0\)")
  assert_one_line_error(lm_jax("evaluate", flag, "--cache_window=50", "--cache_lambda=1.2"),
                        r"--cache_lambda must be in \[0, 1\] \(got 1.2\); pass e.g. --cache_lambda=0.1")
  assert_one_line_error(lm_jax("evaluate", flag, "--cache_preset=ptb", "--cache_theta=-1"),
                        r"--cache_theta must be >= 0 \(got -1.0\)")
  assert_one_line_error(lm_jax("evaluate", flag, "--cache_window=5000"),
                        r"the valid split has [\d,]+ positions per column, not more than --cache_window=5000; pass a smaller")
  assert_one_line_error(lm_jax("evaluate", flag, "--dynamic_eval", "--dynamic_lr=-1"), r"--dynamic_lr must be >= 0")
  result = lm_jax("evaluate", flag, "--cache_window=50", "--cache_search", "--dynamic_eval", "--dynamic_stats_segments=30")
  assert result.returncode == 0, result.stderr
  assert "best: theta" in result.stdout
  table = [line for line in result.stdout.splitlines() if line.startswith(("| plain", "| cache", "| dynamic"))]
  assert [line.split(" (")[0].split(" |")[0] for line in table] == ["| plain", "| cache", "| dynamic", "| cache + dynamic"]
  assert snapshot(workdir) == before
