"""Data parallel on simulated CPU devices: 1 and 4 devices, and two processes of 2 devices each,
train alike; the padded evaluation batch scores exactly the real columns; dropout differs per device.

The device count is fixed when JAX starts, so the runs happen in subprocesses (`worker` below, and
lm-jax-train itself for the two-process run) with XLA_FLAGS set before JAX initialises.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from lm_jax import checkpoints
from lm_jax.models.registry import model_from_config
from tests.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240
DEVICE_COUNTS = (1, 2, 4)
TRAINED_ON = (1, 4)  # 2 devices train in the two-process test (2 x 2) and the dropout-mask test


def config():
  """20 windows of 10 x 8 (rows 201), log every window; the eval batch of 10 pads to 12 on 4 devices."""
  c = tiny_config(epochs=1, log_interval=1)
  c.data.synthetic.train_tokens = 1608
  return c


def with_devices(count: int, **env: str) -> dict:
  """The session's environment (its quick compiling too: root conftest.py) with `count` simulated devices."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
  return {**os.environ, "XLA_FLAGS": flags, "PYTHONUNBUFFERED": "1", **env}


def rel_err(a, b) -> float:
  """Norm-wise: max|a - b| / max|b|, as in test_fidelity."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def train_losses(workdir: str) -> list[float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [record["train_loss"] for record in map(json.loads, f) if "train_loss" in record]


def final_params(workdir: str) -> dict:
  vocab_size = len(checkpoints.restore_meta(workdir, checkpoints.LATEST)["vocab"])
  params = model_from_config(config().model, vocab_size).init_params(0)
  return checkpoints.restore(workdir, checkpoints.LATEST, {"params": params})[0]["params"]


def assert_same_training(workdir: str, expected_workdir: str) -> None:
  losses, expected = train_losses(workdir), train_losses(expected_workdir)
  assert len(losses) == len(expected) == 20
  np.testing.assert_allclose(losses, expected, rtol=1e-5)
  params, expected_params = final_params(workdir), final_params(expected_workdir)
  errors = {name: rel_err(params[name], expected_params[name]) for name in expected_params}
  assert max(errors.values()) < 1e-5, errors


def worker(root: str) -> None:
  """In a process with 4 simulated devices: trains `config()` on the first 1 and 4 of them, and
  records what the tests below check in root/findings.json."""
  import optax

  import jax.numpy as jnp

  from lm_jax import parallel, steps
  from lm_jax.data.batching import put_on_device
  from lm_jax.errors import UserError
  from lm_jax.evaluate import Evaluator
  from lm_jax.models.rnn_model import RNNModel
  from lm_jax.train import train_and_evaluate

  meshes = {n: parallel.data_mesh(jax.devices()[:n]) for n in DEVICE_COUNTS}
  findings = {f"results_{n}": train_and_evaluate(config(), os.path.join(root, f"devices_{n}"), mesh=meshes[n])
              for n in TRAINED_ON}
  try:
    train_and_evaluate(tiny_config(batch_size=6), os.path.join(root, "batch_6"), mesh=meshes[4])
  except UserError as e:
    findings["batch_error"] = str(e)
  findings["batch_6_workdir_exists"] = os.path.exists(os.path.join(root, "batch_6"))

  # Evaluation with 10 columns: as is on 1 and 2 devices, padded to 12 on 4.
  model = RNNModel(vocab_size=30, emsize=8, nhid=12, nlayers=2)
  params = model.init_params(3)
  ids = np.random.default_rng(4).integers(0, 30, 10 * 33 + 3).astype(np.int32)
  findings["eval"] = {n: Evaluator(model, 6, meshes[n]).mean_nll(params, put_on_device(ids, 10, 6, mesh=meshes[n]))
                      for n in DEVICE_COUNTS}

  # Two identical columns, one per device: the same carried state after a step iff the masks agree.
  model = RNNModel(vocab_size=30, emsize=8, nhid=12, nlayers=1, dropout=0.5)
  stream = np.random.default_rng(5).integers(0, 30, 13).astype(np.int32)
  split = put_on_device(np.concatenate([stream, stream]), 2, 6, mesh=meshes[2])
  sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
  step = steps.make_train_step(model, sgd, 6, mesh=meshes[2])
  params = model.init_params(0)
  hidden = []
  for step_number in (0, 0, 1):
    state = steps.TrainState(params, sgd.init(params), model.init_carry(2), jax.random.PRNGKey(0),
                             jnp.int32(step_number))
    state, _ = step(parallel.put_tree(state, meshes[2], steps.STATE_SPECS), steps.WindowAt(0, 6), split.padded_TxB)
    hidden.append(np.asarray(state.carry[0][0]))  # [B, H]
  findings["dropout"] = {"columns_differ": bool(np.any(hidden[0][0] != hidden[0][1])),
                         "repeats": bool(np.array_equal(hidden[0], hidden[1])),
                         "steps_differ": bool(np.any(hidden[0] != hidden[2]))}
  with open(os.path.join(root, "findings.json"), "w") as f:
    json.dump(findings, f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[str, dict]:
  root = str(tmp_path_factory.mktemp("devices"))
  result = subprocess.run([sys.executable, "-c", f"from tests.test_parallel import worker; worker({root!r})"],
                          cwd=ROOT, env=with_devices(4), capture_output=True, text=True, timeout=TIMEOUT_S)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(root, "findings.json")) as f:
    return root, json.load(f)


def test_one_and_four_devices_train_alike(runs):
  root, findings = runs
  for n in TRAINED_ON[1:]:
    assert_same_training(os.path.join(root, f"devices_{n}"), os.path.join(root, "devices_1"))
    for name in ("valid_loss", "test_loss"):
      assert abs(findings[f"results_{n}"][name] / findings["results_1"][name] - 1) < 1e-5


def test_padded_evaluation_batch_scores_only_the_real_columns(runs):
  _, findings = runs
  by_devices = findings["eval"]
  for n in ("2", "4"):
    assert abs(by_devices[n] / by_devices["1"] - 1) < 1e-6, by_devices


def test_batch_that_does_not_split_over_the_devices_is_a_user_error(runs):
  _, findings = runs
  assert findings["batch_error"] == ("batch size 6 does not split over 4 devices; pass --config.batch_size=8 "
                                     "(a multiple of 4)")
  assert not findings["batch_6_workdir_exists"]


def test_dropout_masks_differ_per_device_and_per_step_and_repeat_from_the_seed(runs):
  _, findings = runs
  assert findings["dropout"] == {"columns_differ": True, "repeats": True, "steps_differ": True}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_two_devices_match_one_process_of_four(runs, tmp_path):
  root, _ = runs
  config_file = tmp_path / "config.py"
  config_file.write_text("from tests.test_parallel import config\n\n\ndef get_config():\n  return config()\n")
  workdir, address = str(tmp_path / "run"), f"127.0.0.1:{free_port()}"
  processes = [subprocess.Popen([sys.executable, "-m", "lm_jax.cli.train", f"--config={config_file}",
                                 f"--workdir={workdir}", "--distributed", f"--coordinator_address={address}",
                                 "--num_processes=2", f"--process_id={i}"],
                                cwd=ROOT, env=with_devices(2, JAX_COORDINATOR_BIND_ADDRESS=address),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  try:
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  for p, (_, stderr) in zip(processes, outputs):
    assert p.returncode == 0, stderr[-3000:]
  reports = [[line for line in stdout.splitlines() if line.startswith("|")] for stdout, _ in outputs]
  assert any("End of training" in line for line in reports[0]) and reports[1] == []  # process 0 alone reports
  assert_same_training(workdir, os.path.join(root, "devices_4"))


def test_cluster_flags_without_distributed_are_a_user_error(tmp_path):
  result = subprocess.run([sys.executable, "-m", "lm_jax.cli.train", "--config=configs/quickstart.py",
                           f"--workdir={tmp_path / 'w'}", "--num_processes=2", "--process_id=0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == ("train.py: error: --num_processes, --process_id given without "
                                                    "--distributed; add --distributed to join a multi-process run")
  assert not os.path.exists(tmp_path / "w")
