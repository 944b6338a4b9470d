"""lm_jax against PyTorch: the same function, the same training steps, the same perplexity, and
checkpoints that convert both ways. Relative errors are norm-wise: max|a - b| / max|b|, b PyTorch's."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the fidelity tests compare with PyTorch: pip install 'lm_jax[torch]'")

from lm_jax import config as config_lib, convert, trained  # noqa: E402
from lm_jax.data.batching import put_on_device  # noqa: E402
from lm_jax.data.sources import corpus_from_lines, read_directory  # noqa: E402
from lm_jax.errors import UserError  # noqa: E402
from tests.conftest import reference_training_losses, token_ids  # noqa: E402
from lm_jax.evaluate import Evaluator  # noqa: E402
from lm_jax.models.rnn_model import RNNModel  # noqa: E402
from torch_reference import word_language_model as torch_reference  # noqa: E402
from torch_reference.word_language_model import TorchRNNModel  # noqa: E402

torch.set_num_threads(1)  # the machine is shared; small models gain nothing from threads

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def numpy_state_dict(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {name: t.detach().numpy() for name, t in model.state_dict().items()}


def torch_model(cell: str, nlayers: int, tied: bool, vocab_size: int = 50, nhid: int = 16,
                seed: int = 0, random_weights: bool = False) -> TorchRNNModel:
  """Reference init, or with `random_weights` every tensor (biases too) ~ U(-0.3, 0.3). Untied models get
  emsize != nhid, so a transposed or swapped tensor cannot go unnoticed."""
  torch.manual_seed(seed)
  model = TorchRNNModel(cell, vocab_size, nhid if tied else nhid - 4, nhid, nlayers, tied=tied)
  if random_weights:
    for p in model.parameters():
      torch.nn.init.uniform_(p, -0.3, 0.3)
  return model


def jax_model(imported: RNNModel) -> RNNModel:
  """The imported model without dropout, as the fidelity checks run it."""
  return dataclasses.replace(imported, dropout=0.0)


def as_tuple(hidden) -> tuple:
  return hidden if isinstance(hidden, tuple) else (hidden,)


def window_errors(cell: str, nlayers: int, tied: bool, dtype: torch.dtype = torch.float32,
                  num_windows: int = 3, steps_per_window: int = 6, batch_size: int = 4) -> list[float]:
  """Relative error of the logits and of the carried state in each of consecutive windows."""
  reference = torch_model(cell, nlayers, tied, random_weights=True).to(dtype)
  shape, params = convert.import_state_dict(numpy_state_dict(reference), cell)
  model = jax_model(shape)

  @jax.jit
  def apply(params, tokens_TxB, carry):
    output = model.features(params, tokens_TxB, carry)
    return model.logits(params, output.features_TxBxH), output.carry

  tokens_NxTxB = np.random.default_rng(1).integers(shape.vocab_size, size=(num_windows, steps_per_window, batch_size))
  hidden = reference.init_hidden(batch_size)
  carry = model.init_carry(batch_size)
  errors = []
  with torch.no_grad():
    for tokens_TxB in tokens_NxTxB:
      expected_TxBxV, hidden = reference(torch.from_numpy(tokens_TxB), hidden)
      logits_TxBxV, carry = apply(params, jnp.asarray(tokens_TxB), carry)
      errors.append(rel_err(logits_TxBxV, expected_TxBxV))
      # lm_jax carries each layer's (h, c); PyTorch stacks the layers: [nlayers, B, H] per state.
      stacked = tuple(np.stack(per_layer) for per_layer in zip(*carry))
      errors.extend(rel_err(state, expected) for state, expected in zip(stacked, as_tuple(hidden)))
  return errors


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("nlayers", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_logits_and_state_match_torch_over_windows(cell, nlayers, tied):
  assert max(window_errors(cell, nlayers, tied)) < 1e-5


@pytest.mark.parametrize("cell", CELLS)
def test_logits_match_torch_in_float64(cell):
  """In float64 the two agree to rounding: the float32 gap is rounding, not a different function."""
  with jax.enable_x64(True):
    assert max(window_errors(cell, 2, False, torch.float64)) < 1e-12


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_through_torch_is_bitwise(cell, tied):
  reference = torch_model(cell, 2, tied)
  model = RNNModel(vocab_size=50, cell=cell, emsize=reference.encoder.embedding_dim, nhid=16, nlayers=2, tied=tied)
  params = jax.tree.map(np.asarray, model.init_params(3))
  reference.load_state_dict(convert.to_torch(convert.export_state_dict(model, params)))
  imported, back = convert.import_state_dict(numpy_state_dict(reference), cell)
  assert imported == model
  assert back.keys() == params.keys()
  for name, array in params.items():
    assert back[name].dtype == array.dtype and np.array_equal(back[name], array), name


def test_float64_state_dict_round_trip_is_bitwise():
  state_dict = numpy_state_dict(torch_model("lstm", 2, True).double())
  shape, params = convert.import_state_dict(state_dict)
  exported = convert.export_state_dict(jax_model(shape), params)
  assert list(exported) == list(state_dict)  # the reference's names, in its order
  for name, array in state_dict.items():
    assert exported[name].dtype == np.float64 and np.array_equal(exported[name], array), name


def training_run(cell: str, nlayers: int, tied: bool, dtype: torch.dtype = torch.float32):
  """20 reference training steps (bptt 35, batch 20, lr 20, clip 0.25, dropout 0) on both sides, the
  last window short; returns both sides' losses and final state_dicts."""
  config = config_lib.reference_config()
  config.model.update(cell=cell, nlayers=nlayers, emsize=32, nhid=32, dropout=0.0, tied=tied)
  rows = 19 * config.bptt + 20 + 1
  ids = token_ids(rows * config.batch_size + 7, vocab_size=100, seed=2)
  reference = torch_model(cell, nlayers, tied, vocab_size=100, nhid=32, seed=4).to(dtype)
  shape, params = convert.import_state_dict(numpy_state_dict(reference), cell)
  model = jax_model(shape)

  losses, final_params = reference_training_losses(model, params, config, ids)

  data_TxB = torch_reference.batchify(torch.from_numpy(ids).long(), config.batch_size)
  expected_losses = torch_reference.train(reference, data_TxB, config.bptt, config.optim.lr, config.optim.clip)
  return losses, expected_losses, convert.export_state_dict(model, final_params), numpy_state_dict(reference)


def training_errors(cell: str, nlayers: int, tied: bool, dtype: torch.dtype = torch.float32) -> tuple[float, float]:
  """Worst absolute loss difference over the 20 steps, worst relative error of a final parameter."""
  losses, expected_losses, state_dict, expected_state_dict = training_run(cell, nlayers, tied, dtype)
  assert len(losses) == len(expected_losses) == 20
  assert abs(expected_losses[-1] - expected_losses[0]) > 0.1  # the steps did move the model
  return (float(np.max(np.abs(np.subtract(losses, expected_losses)))),
          max(rel_err(state_dict[name], expected) for name, expected in expected_state_dict.items()))


# lr 20 makes some models chaotic, where float32 rounding alone grows past 1e-4 in 20 steps (rnn_tanh,
# rnn_relu, 2-layer GRU); the float64 test below covers them. GRU clips in 13 of its 20 steps.
@pytest.mark.parametrize("cell, nlayers, tied", [("lstm", 2, False), ("gru", 1, True)])
def test_twenty_training_steps_match_torch(cell, nlayers, tied):
  loss_error, param_error = training_errors(cell, nlayers, tied)
  assert loss_error < 1e-4 and param_error < 1e-4


@pytest.mark.parametrize("cell, nlayers, tied", [("lstm", 2, False), ("gru", 1, True), ("rnn_tanh", 2, False),
                                                 ("rnn_relu", 2, True)])
def test_twenty_training_steps_match_torch_in_float64(cell, nlayers, tied):
  """Without rounding to hide it, every difference in the step (clip rule, loss, gradient) shows."""
  with jax.enable_x64(True):
    loss_error, param_error = training_errors(cell, nlayers, tied, torch.float64)
  assert loss_error < 1e-9 and param_error < 1e-9


def evaluation_pair(cell: str) -> tuple[float, float]:
  """Perplexity of one imported model by lm_jax's Evaluator and by the reference's evaluate()."""
  bptt, batch_size = 35, 10
  ids = token_ids((5 * bptt + 12 + 1) * batch_size + 3, vocab_size=100, seed=5)
  reference = torch_model(cell, 2, False, vocab_size=100, nhid=32, seed=6, random_weights=True)
  shape, params = convert.import_state_dict(numpy_state_dict(reference), cell)
  loss = Evaluator(jax_model(shape), bptt).mean_nll(params, put_on_device(ids, batch_size, bptt, "test"))
  expected = torch_reference.evaluate(reference, torch_reference.batchify(torch.from_numpy(ids).long(), batch_size),
                                      bptt)
  return math.exp(loss), math.exp(expected)


@pytest.mark.parametrize("cell", CELLS)
def test_evaluation_perplexity_matches_torch(cell):
  ppl, expected = evaluation_pair(cell)
  assert abs(ppl - expected) / expected < 1e-5


# --- The importer: files, the workdir, the CLI, and its errors ---------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  """train/valid/test text over ~60 words, 12 words a line."""
  directory = tmp_path_factory.mktemp("data")
  for split, seed in (("train", 7), ("valid", 8), ("test", 9)):
    words = [f"w{i}" for i in token_ids(1200, vocab_size=60, seed=seed)]
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    (directory / f"{split}.txt").write_text("\n".join(lines) + "\n")
  return str(directory)


@pytest.fixture(scope="module")
def vocab_size(data_dir) -> int:
  return len(corpus_from_lines(read_directory(data_dir)).vocab)


def save_state_dict(model: torch.nn.Module, path) -> str:
  torch.save(model.state_dict(), path)
  return str(path)


def test_cli_import_then_evaluate_through_trained_load(tmp_path, data_dir, vocab_size):
  reference = torch_model("lstm", 2, True, vocab_size=vocab_size, nhid=24, seed=10)
  checkpoint = save_state_dict(reference, tmp_path / "model.pt")
  workdir = str(tmp_path / "run")
  result = subprocess.run([sys.executable, "-m", "lm_jax.cli.import_torch", f"--checkpoint={checkpoint}",
                           f"--data_dir={data_dir}", f"--workdir={workdir}"],
                          capture_output=True, text=True, cwd=REPO, check=False)
  assert result.returncode == 0, result.stderr
  assert "imported lstm 2x24 (emsize 24, tied)" in result.stdout

  run = trained.load(workdir)
  assert (run.config.model.cell, run.config.model.nlayers, run.config.model.tied) == ("lstm", 2, True)
  test_ids = corpus_from_lines(read_directory(data_dir)).ids["test"]
  loss = Evaluator(run.model, run.config.bptt).mean_nll(run.params, put_on_device(test_ids, 10, run.config.bptt))
  expected = torch_reference.evaluate(reference, torch_reference.batchify(torch.from_numpy(test_ids).long(), 10),
                                      run.config.bptt)
  assert abs(math.exp(loss) - math.exp(expected)) / math.exp(expected) < 1e-5


def test_import_refuses_an_existing_run_unless_overwrite(tmp_path, data_dir, vocab_size):
  checkpoint = save_state_dict(torch_model("gru", 1, False, vocab_size=vocab_size), tmp_path / "model.pt")
  workdir = str(tmp_path / "run")
  convert.import_checkpoint(checkpoint, data_dir, workdir)
  with pytest.raises(UserError, match=r"^workdir '.*run' already holds a run; pass --overwrite to replace it"):
    convert.import_checkpoint(checkpoint, data_dir, workdir)
  checkpoint = save_state_dict(torch_model("rnn_relu", 1, False, vocab_size=vocab_size), tmp_path / "relu.pt")
  assert convert.import_checkpoint(checkpoint, data_dir, workdir, "RNN_RELU", overwrite=True).cell == "rnn_relu"
  assert trained.load(workdir).config.model.cell == "rnn_relu"


# The reference's model.py as far as pickling goes: class `RNNModel` in module `model`, with its
# submodules (drop, encoder, rnn, decoder) and plain attributes (ntoken, rnn_type, nhid, nlayers).
REFERENCE_MODEL_PY = """
from torch_reference.word_language_model import TorchRNNModel

class RNNModel(TorchRNNModel):
  def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
    super().__init__(rnn_type.lower(), ntoken, ninp, nhid, nlayers, dropout, tie_weights)
    self.ntoken, self.rnn_type = ntoken, rnn_type
"""


def pickle_in_a_module_then_forget_it(tmp_path, monkeypatch, module: str, source: str, build) -> tuple[object, str]:
  """torch.save(build(module)) with `module` importable from tmp_path only, then made unimportable again, as
  where lm-jax-import runs: the file's classes can no longer be imported."""
  (tmp_path / f"{module}.py").write_text(source)
  monkeypatch.syspath_prepend(str(tmp_path))
  sys.modules.pop(module, None)  # not monkeypatch.delitem, which would put the module back afterwards
  obj = build(importlib.import_module(module))
  torch.save(obj, tmp_path / f"{module}.pt")
  del sys.modules[module]
  monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
  with pytest.raises(ModuleNotFoundError):
    __import__(module)
  return obj, str(tmp_path / f"{module}.pt")


def lm_jax_cli(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", f"lm_jax.cli.{module}", *args], capture_output=True, text=True,
                        cwd=REPO, check=False)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_import_reads_the_references_whole_pickled_model_without_its_source(tmp_path, monkeypatch, data_dir,
                                                                            vocab_size, tied):
  def build(model):
    reference = model.RNNModel("LSTM", vocab_size, 24, 24, 2, dropout=0.2, tie_weights=tied)
    with torch.no_grad():  # the reference's init leaves biases at 0: random ones catch a swapped tensor
      for p in reference.parameters():
        p.uniform_(-0.3, 0.3)
    return reference

  reference, checkpoint = pickle_in_a_module_then_forget_it(tmp_path, monkeypatch, "model", REFERENCE_MODEL_PY, build)
  expected = reference.state_dict()

  read = convert.read_torch_checkpoint(checkpoint)
  assert list(read) == list(expected)  # the names state_dict() gives, in its order, decoder.weight too if tied
  for name, tensor in expected.items():
    assert read[name].dtype == np.float32 and np.array_equal(read[name], tensor.numpy()), name

  workdir = str(tmp_path / "run")
  imported = lm_jax_cli("import_torch", f"--checkpoint={checkpoint}", f"--data_dir={data_dir}", f"--workdir={workdir}")
  assert imported.returncode == 0, imported.stderr
  assert f"imported lstm 2x24 (emsize 24, {'tied' if tied else 'untied'})" in imported.stdout
  shape, params = convert.import_state_dict({name: t.numpy() for name, t in expected.items()})
  restored = trained.load(workdir).params
  assert set(restored) == set(params)
  for name, array in params.items():
    assert np.array_equal(restored[name], array), name

  evaluated = lm_jax_cli("evaluate", f"--workdir={workdir}")
  assert evaluated.returncode == 0, evaluated.stderr
  ppl = float(evaluated.stdout.split("test ppl")[1].split("|")[0])
  test_ids = corpus_from_lines(read_directory(data_dir)).ids["test"]
  expected_loss = torch_reference.evaluate(reference, torch_reference.batchify(torch.from_numpy(test_ids).long(), 10),
                                           config_lib.reference_config().bptt)
  assert abs(ppl - math.exp(expected_loss)) <= 0.005 + 1e-5 * ppl  # the CLI rounds to 2 decimals


def test_import_refuses_a_pickle_that_would_run_code(tmp_path, monkeypatch, data_dir):
  marker = tmp_path / "ran"
  _, checkpoint = pickle_in_a_module_then_forget_it(
      tmp_path, monkeypatch, "model",
      "import os\n\nclass RNNModel:\n  def __reduce__(self):\n"
      f"    return (os.system, ('touch {marker}',))\n",
      lambda model: {"encoder.weight": torch.zeros(3, 2), "payload": model.RNNModel()})
  result = lm_jax_cli("import_torch", f"--checkpoint={checkpoint}", f"--data_dir={data_dir}",
                      f"--workdir={tmp_path / 'run'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
  assert [line for line in result.stderr.splitlines() if "error:" in line] == [
      f"import_torch.py: error: {checkpoint} refers to posix.system, which no word_language_model or awd-lstm-lm "
      "model holds, so it was not loaded (nothing in it ran); import a model saved by the reference's main.py, or save "
      "the weights with `torch.save(model.state_dict(), path)` and import that"]
  assert not marker.exists() and not (tmp_path / "run").exists()
  torch.load(checkpoint, weights_only=False)  # the file is no dud: a plain unpickler runs its command
  assert marker.exists()


def user_error(call, *args) -> str:
  with pytest.raises(UserError) as raised:
    call(*args)
  message = str(raised.value)
  assert "\n" not in message
  return message


def test_import_errors_on_a_vocabulary_size_mismatch(tmp_path, data_dir, vocab_size):
  checkpoint = save_state_dict(torch_model("lstm", 1, False, vocab_size=vocab_size + 1), tmp_path / "model.pt")
  message = user_error(convert.import_checkpoint, checkpoint, data_dir, str(tmp_path / "run"))
  assert message == (f"the checkpoint's vocabulary has {vocab_size + 1} words but {data_dir!r} has {vocab_size}; "
                     "pass the --data_dir the model was trained on")
  assert not os.path.exists(tmp_path / "run")  # nothing written


def test_import_errors_on_an_ambiguous_or_wrong_cell():
  state_dict = numpy_state_dict(torch_model("rnn_tanh", 1, False))
  assert user_error(convert.import_state_dict, state_dict) == (
      "the checkpoint is a plain RNN, and RNN_TANH and RNN_RELU have the same tensors; pass the reference's "
      "--model as --cell=RNN_TANH or --cell=RNN_RELU")
  assert convert.import_state_dict(state_dict, "RNN_TANH")[0].cell == "rnn_tanh"
  assert user_error(convert.import_state_dict, numpy_state_dict(torch_model("lstm", 1, False)), "gru") == (
      "--cell=GRU has 3 gates per unit but the checkpoint's rnn has 4; pass the --cell the model was trained "
      "with, or omit it")


def test_import_errors_on_files_that_hold_no_state_dict(tmp_path, monkeypatch):
  torch.save([1, 2, 3], tmp_path / "list.pt")
  assert user_error(convert.read_torch_checkpoint, str(tmp_path / "list.pt")) == (
      f"{tmp_path / 'list.pt'} holds a list, not a state_dict or model; save one in PyTorch with "
      "`torch.save(model.state_dict(), path)`")

  (tmp_path / "text.pt").write_text("not a checkpoint\n")
  assert user_error(convert.read_torch_checkpoint, str(tmp_path / "text.pt")).startswith(
      f"{tmp_path / 'text.pt'} is neither a state_dict nor a model torch can unpickle here (")

  # A whole model of a class the reference does not have, even one holding the reference's modules.
  _, checkpoint = pickle_in_a_module_then_forget_it(
      tmp_path, monkeypatch, "elsewhere_model",
      "from torch_reference.word_language_model import TorchRNNModel\n\nclass RNNModel(TorchRNNModel):\n  pass\n",
      lambda module: module.RNNModel("gru", 20, 8, 8, 1))
  assert user_error(convert.read_torch_checkpoint, checkpoint).startswith(
      f"{checkpoint} refers to elsewhere_model.RNNModel, which no word_language_model or awd-lstm-lm model holds, so "
      "it was not loaded (nothing in it ran); import a model saved by the reference's main.py")


def test_import_errors_on_a_state_dict_of_another_model():
  state_dict = numpy_state_dict(torch_model("lstm", 1, False))
  del state_dict["decoder.bias"]
  assert user_error(convert.import_state_dict, state_dict) == (
      "the checkpoint has no decoder.bias; import a whole RNNModel state_dict")
  transformer_like = {"input_emb.weight": np.zeros((5, 4), np.float32)}
  assert user_error(convert.import_state_dict, transformer_like).startswith(
      "the checkpoint is no model lm_jax imports (word_language_model RNNModel: it has no encoder.weight; "
      "awd-lstm-lm RNNModel: it has no encoder.weight; word_language_model TransformerModel: it has no "
      "encoder.layers.0.linear1.weight)")
