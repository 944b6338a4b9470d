"""awd-lstm-lm's own files in and out of lm_jax: the [model, criterion, optimizer] its main.py pickles (and
finetune.py's model) import without its source and give the reference's logits, under ASGD from the averaged
weights main.py evaluates; the eval-time duplicate weight_hh_l0 is checked and left out; QRNN models and tail
clusters are refused in one line; lm-jax-export writes a state_dict the reference model loads, giving the same
logits, and that imports back exactly. The files are written by torch_reference/awd_lstm_lm.py's classes under
awd-lstm-lm's module names, which are no longer importable when lm_jax reads them."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the import tests write awd-lstm-lm's files with PyTorch: "
                            "pip install 'lm_jax[torch]'")

from lm_jax import convert, trained  # noqa: E402
from lm_jax.errors import UserError  # noqa: E402
from torch_reference import awd_lstm_lm as awd  # noqa: E402

torch.set_num_threads(1)  # the machine is shared; small models gain nothing from threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, EMSIZE, NHID, NLAYERS, B = 40, 10, 14, 3, 3
RATES = dict(dropout=0.4, dropouth=0.25, dropouti=0.4, dropoute=0.1, wdrop=0.5)  # awd-lstm-lm README's PTB flags
AWD_MODULES = ("model", "locked_dropout", "weight_drop", "splitcross", "torchqrnn")


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def reference_model(rnn_type: str = "LSTM") -> awd.RNNModel:
  torch.manual_seed(0)
  model = awd.RNNModel(rnn_type, V, EMSIZE, NHID, NLAYERS, RATES["dropout"], RATES["dropouth"], RATES["dropouti"],
                       RATES["dropoute"], RATES["wdrop"], True)
  with torch.no_grad():  # biases too, so that a misplaced tensor shows
    for p in model.parameters():
      p.uniform_(-0.3, 0.3)
  return model


PROBE_TxB = torch.from_numpy(np.random.default_rng(3).integers(V, size=(7, B)))
TRAIN_TxB = torch.from_numpy(np.random.default_rng(4).integers(V, size=(9, 4)))


def save_main_py_file(path, optimizer_name: str) -> tuple[torch.Tensor, dict]:
  """Trains as main.py does (SGD, then ASGD), evaluates, saves; returns the logits of the weights main.py
  evaluates (under ASGD the averages `ax`) and those weights by state_dict name.

  optimizer_name: "SGD"; "ASGD" (main.py's save: ax copied into the model first); "ASGD-iterate" (the model
  saved holding its last iterate); "finetune" (ASGD, the model alone, as finetune.py saves it).
  """
  model = reference_model()
  criterion = awd.SplitCrossEntropyLoss(EMSIZE, splits=[])
  optimizer = torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=1.0, weight_decay=1.2e-6)
  for _ in range(2):
    awd.train_step(model, criterion, optimizer, TRAIN_TxB)
  iterates = {}
  if optimizer_name != "SGD":
    optimizer = torch.optim.ASGD(model.parameters(), lr=1.0, t0=0, lambd=0.0, weight_decay=1.2e-6)
    for _ in range(3):
      awd.train_step(model, criterion, optimizer, TRAIN_TxB)
    for p in model.parameters():  # main.py's evaluation under ASGD
      iterates[p] = p.data.clone()
      p.data = optimizer.state[p]["ax"].clone()
  expected = awd.logits(model, PROBE_TxB)  # an evaluation: WeightDrop leaves weight_hh_l0 registered
  weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
  if optimizer_name == "ASGD-iterate":
    for p, iterate in iterates.items():
      p.data = iterate
  with awd.importable_as_awd_lstm_lm():
    torch.save(model if optimizer_name == "finetune" else [model, criterion, optimizer], path)
  assert not any(importlib.util.find_spec(name) for name in AWD_MODULES)  # as where lm-jax-import runs
  return expected, weights


def jax_logits(model, params, tokens_TxB) -> np.ndarray:
  carry = model.init_carry(tokens_TxB.shape[1])
  features = model.features(params, jax.numpy.asarray(tokens_TxB.numpy()), carry).features_TxBxH
  return np.asarray(model.logits(params, features))


def user_error(call, *args) -> str:
  with pytest.raises(UserError) as raised:
    call(*args)
  message = str(raised.value)
  assert "\n" not in message
  return message


@pytest.mark.parametrize("optimizer_name, took", [
    ("SGD", "main.py's [model, criterion, optimizer]: the model's parameters, which main.py evaluated and saved "
            "(optimizer SGD, no averages)"),
    ("ASGD", "main.py's [model, criterion, optimizer]: the ASGD averages optimizer.state[p]['ax'], which main.py "
             "copies into the model to evaluate and save (equal to the model's parameters)"),
    ("ASGD-iterate", "main.py's [model, criterion, optimizer]: the ASGD averages optimizer.state[p]['ax'], which "
                     "main.py copies into the model to evaluate and save (not the model's parameters: its last "
                     "iterate)"),
    ("finetune", "finetune.py's pickled model: the model's parameters (finetune.py saves them holding ASGD's "
                 "averages)"),
])
def test_main_py_files_import_without_the_source_and_give_the_reference_logits(tmp_path, optimizer_name, took):
  expected_TxBxV, weights = save_main_py_file(tmp_path / "model.pt", optimizer_name)
  assert "rnns.0.module.weight_hh_l0" in weights and "rnns.0.module.weight_hh_l0_raw" in weights  # as main.py's

  read = convert.read_torch_file(str(tmp_path / "model.pt"))
  assert read.weights == took
  assert read.model_fields == RATES  # the file's rates, not main.py's defaults
  for name, tensor in weights.items():  # what main.py evaluated, bit for bit
    assert np.array_equal(read.state_dict[name], tensor.numpy()), name
  model, params = convert.import_state_dict(read.state_dict)
  assert model.describe() == "lstm 14/14/10 (emsize 10, tied)"
  assert rel_err(jax_logits(model, params, PROBE_TxB), expected_TxBxV.numpy()) < 1e-5


def test_the_eval_time_duplicate_weight_is_checked_and_left_out():
  model = reference_model()
  awd.logits(model, PROBE_TxB)  # registers weight_hh_l0 beside weight_hh_l0_raw, as after main.py's evaluation
  state_dict = {name: t.detach().numpy().copy() for name, t in model.state_dict().items()}
  copies = [f"rnns.{k}.module.weight_hh_l0" for k in range(NLAYERS)]
  assert all(name in state_dict for name in copies)
  _, params = convert.import_state_dict(state_dict)
  assert np.array_equal(params["layer_1_w_hh"], state_dict["rnns.1.module.weight_hh_l0_raw"].T)

  torch.manual_seed(5)  # saved after a training step: zeros where dropped, the rest raw / (1 - p)
  dropped = dict(state_dict, **{name: torch.nn.functional.dropout(torch.from_numpy(state_dict[f"{name}_raw"]), 0.5)
                                .numpy() for name in copies})
  assert 0.3 < np.mean(dropped[copies[0]] == 0) < 0.7
  only_copies = {name: array for name, array in state_dict.items() if not name.endswith("_raw")}
  for variant in (dropped, only_copies):
    _, variant_params = convert.import_state_dict(variant)
    assert all(np.array_equal(variant_params[name], params[name]) for name in params)

  other = dict(state_dict, **{copies[2]: state_dict[copies[2]] * 1.5 + 0.01})  # no dropped copy of the raw one
  assert user_error(convert.import_state_dict, other) == (
      "the checkpoint's rnns.2.module.weight_hh_l0 is neither its weight_hh_l0_raw nor a weight-dropped copy of it "
      "(each weight 0 or scaled by 1/(1-p)); import a model saved by awd-lstm-lm's main.py")


def test_qrnn_models_tail_clusters_and_other_lists_are_refused_in_one_line(tmp_path):
  qrnn = reference_model("QRNN")
  with awd.importable_as_awd_lstm_lm():
    torch.save([qrnn, awd.SplitCrossEntropyLoss(EMSIZE, []), torch.optim.SGD(qrnn.parameters(), lr=1)],
               tmp_path / "qrnn.pt")
  assert user_error(convert.read_torch_file, str(tmp_path / "qrnn.pt")) == (
      f"{tmp_path / 'qrnn.pt'} holds a QRNN model (torchqrnn.qrnn.QRNNLayer); lm_jax imports awd-lstm-lm's LSTM and "
      "GRU models, not its QRNN (torchqrnn) layers, so it was not loaded (nothing in it ran)")
  state_dict = {name: t.detach().numpy() for name, t in qrnn.state_dict().items()}
  assert user_error(convert.import_state_dict, state_dict) == (
      "the checkpoint is a QRNN model (rnns.0.linear.module.bias); lm_jax imports awd-lstm-lm's LSTM and GRU models, "
      "not its QRNN (torchqrnn) layers")

  model = reference_model()
  criterion = awd.SplitCrossEntropyLoss(EMSIZE, splits=[16, 30])  # main.py's [2800, 20000, 76000], small
  with awd.importable_as_awd_lstm_lm():
    torch.save([model, criterion, torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=1)],
               tmp_path / "split.pt")
  assert user_error(convert.read_torch_file, str(tmp_path / "split.pt")) == (
      "the file's criterion is a SplitCrossEntropyLoss with 2 tail clusters (splits at 16, 30: main.py's choice above "
      "75,000 words), a two-level softmax lm_jax does not model; lm_jax imports awd-lstm-lm models scored by the full "
      "softmax")

  with awd.importable_as_awd_lstm_lm():
    torch.save([model, criterion], tmp_path / "pair.pt")
  assert user_error(convert.read_torch_file, str(tmp_path / "pair.pt")) == (
      "the file holds [model.RNNModel, splitcross.SplitCrossEntropyLoss], not the [model, criterion, optimizer] "
      "awd-lstm-lm's main.py saves; import a file its main.py wrote")


@pytest.fixture()
def data_dir(tmp_path) -> str:
  """V - 1 words and <eos>: the vocabulary of the reference model's V ids."""
  words = [f"w{i}" for i in range(V - 1)]
  for split in ("train", "valid", "test"):
    (tmp_path / f"{split}.txt").write_text(" ".join(words) + "\n")
  return str(tmp_path)


def test_export_loads_into_the_reference_and_imports_back_exactly(tmp_path, data_dir):
  expected_TxBxV, weights = save_main_py_file(tmp_path / "model.pt", "ASGD-iterate")
  workdir = str(tmp_path / "run")
  lines = []
  model = convert.import_checkpoint(str(tmp_path / "model.pt"), data_dir, workdir, report=lines.append)
  assert lines == [f"| took {convert.read_torch_file(str(tmp_path / 'model.pt')).weights}"]
  run = trained.load(workdir)
  assert run.model == model and dataclasses.asdict(run.model) == {**dataclasses.asdict(model), **RATES}

  output = str(tmp_path / "exported.pt")
  result = subprocess.run([sys.executable, "-m", "lm_jax.cli.export_torch", f"--workdir={workdir}",
                           f"--output={output}"], capture_output=True, text=True, cwd=REPO, check=False)
  assert result.returncode == 0, result.stderr
  constructor = "model.RNNModel('LSTM', 40, 10, 14, 3, 0.4, 0.25, 0.4, 0.1, 0.5, True)"
  assert result.stdout.splitlines() == [
      f"| wrote lstm 14/14/10 (emsize 10, tied), 40 words, best parameters (epoch 0), 15 tensors named as the "
      f"awd-lstm-lm RNNModel state_dict's, to {output}",
      f"| load it there: m = {constructor}; m.load_state_dict(torch.load({output!r}))"]

  exported = torch.load(output, weights_only=True)
  fresh = awd.RNNModel("LSTM", V, EMSIZE, NHID, NLAYERS, 0.4, 0.25, 0.4, 0.1, 0.5, True)
  assert list(exported) == list(fresh.state_dict())  # a fresh model's names: no eval-time duplicate
  for name, tensor in exported.items():  # the averages main.py evaluates, bit for bit
    assert torch.equal(tensor, weights[name]), name
  namespace = {"model": awd, "torch": torch}
  exec(result.stdout.splitlines()[1].removeprefix("| load it there: "), namespace)  # the printed instructions
  assert torch.equal(awd.logits(namespace["m"], PROBE_TxB), expected_TxBxV)
  assert rel_err(jax_logits(run.model, run.params, PROBE_TxB), expected_TxBxV.numpy()) < 1e-5

  reimported, params = convert.import_state_dict(convert.read_torch_checkpoint(output))
  assert dataclasses.replace(reimported, **RATES) == run.model
  assert set(params) == set(run.params)
  for name, array in params.items():
    assert np.array_equal(array, np.asarray(run.params[name])), name


def test_export_refuses_a_reference_that_cannot_hold_the_model():
  model, params = convert.import_state_dict({name: t.detach().numpy() for name, t in reference_model().state_dict()
                                             .items()})
  assert convert.reference_of(model, params) == "awd-lstm-lm"
  assert user_error(convert.export_state_dict, model, params, "word_language_model") == (
      "a lstm 14/14/10 (emsize 10, tied) model does not export to 'word_language_model'; use one of awd-lstm-lm")
  plain = dataclasses.replace(model, cell="rnn_tanh")  # awd-lstm-lm has no plain RNN, word_language_model no 14/14/10
  plain_params = {name: np.zeros(s.shape, s.dtype) for name, s in jax.eval_shape(plain.init_params, 0).items()}
  assert user_error(convert.export_state_dict, plain, plain_params) == (
      "a rnn_tanh 14/14/10 (emsize 10, tied) model does not export to any reference; no reference model holds it")


def test_export_without_torch_says_it_needs_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # any import of torch now fails
  assert user_error(convert.save_torch, {}, "model.pt") == (
      "writing a PyTorch checkpoint needs torch; install it with `pip install 'lm_jax[torch]'`")
