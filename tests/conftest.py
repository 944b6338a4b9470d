"""Shared fixtures: a tiny synthetic-corpus config that trains in seconds (the session's compilation cache: the
root conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import ml_collections
import numpy as np
import pytest

from lm_jax.config import reference_config
from tests import xla_session

REPO = Path(__file__).resolve().parent.parent


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = reference_config()
  c.data.source = "synthetic"
  c.data.synthetic.update(vocab_size=200, num_classes=8, train_tokens=12_000, valid_tokens=2_000, test_tokens=2_000)
  c.model.update(emsize=16, nhid=16, nlayers=1, dropout=0.0)
  c.update(epochs=2, batch_size=8, bptt=10, log_interval=50)
  c.optim.lr = 20.0
  for key, value in overrides.items():
    node, _, field = key.rpartition(".")
    (c[node] if node else c)[field] = value
  return c


def token_ids(num_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
  """A stream with something to learn: each word is followed by one of its 3 fixed successors."""
  rng = np.random.default_rng(seed)
  successors_Vx3 = rng.integers(vocab_size, size=(vocab_size, 3))
  ids = np.zeros(num_tokens, np.int32)
  for t, choice in enumerate(rng.integers(3, size=num_tokens - 1), 1):
    ids[t] = successors_Vx3[ids[t - 1], choice]
  return ids


def reference_training_losses(model, params, config: ml_collections.ConfigDict, ids: np.ndarray):
  """lm_jax's side of the 20-step fidelity runs: the train step over every window of `ids` at the config's
  batch, bptt and optimiser, dropout key 0, from a zero carry. Returns the per-window losses and the final
  parameters."""
  import jax
  import jax.numpy as jnp

  from lm_jax import optim, steps
  from lm_jax.data.batching import put_on_device, window_bounds

  optimizer = optim.make_optimizer(config.optim)
  train_step = steps.make_train_step(model, optimizer, config.bptt)
  split = put_on_device(ids, config.batch_size, config.bptt, "train")
  state = steps.TrainState(params, optimizer.init(params), model.init_carry(config.batch_size), jax.random.PRNGKey(0),
                           jnp.int32(0))
  losses = []
  for start, length in window_bounds(split.rows, config.bptt):
    state, metrics = train_step(state, steps.WindowAt(start, length), split.padded_TxB)
    losses.append(float(metrics["loss"]))
  return losses, state.params


@pytest.fixture
def tiny():
  return tiny_config


def in_optimised_process(target: str, **kwargs: Any) -> Any:
  """`module:function(**kwargs)` in a fresh Python with XLA's default optimisation, returning its JSON result.

  For the few tests whose time goes to running a longer program, not to compiling it: the session's optimisation
  level 0 (root conftest.py) doubles theirs (measured: the floor run 94 -> 49 s, the classifier's 63 -> 29 s).
  """
  module, name = target.split(":")
  code = (f"import json, sys\nfrom {module} import {name}\n"
          f"print(json.dumps({name}(**json.loads(sys.argv[1])), default=float))")
  done = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], cwd=REPO, capture_output=True, text=True,
                        env=xla_session.optimised_environment(), timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 300.0) -> None:
  """Polls `condition` every 0.1 s; fails the test if `timeout_s` pass first."""
  deadline = time.time() + timeout_s
  while not condition():
    assert time.time() < deadline, f"timed out waiting until {what}"
    time.sleep(0.1)
