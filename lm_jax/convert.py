"""Conversion between PyTorch word_language_model checkpoints and lm_jax parameters.

The reference's `RNNModel` state_dict maps one to one onto lm_jax's parameters (the layout is in
lm_jax/models/rnn_model.py): the recurrent weight matrices are transposed to the x @ W layout,
everything else is copied, and the gate order (LSTM i, f, g, o; GRU r, z, n) is PyTorch's already.
The conversion works on numpy arrays of any dtype and needs no torch; only `read_torch_checkpoint`
and `to_torch` import it, lazily.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import numpy as np

from lm_jax import checkpoints, config as config_lib, torch_pickle, workdir as workdir_lib
from lm_jax.data.sources import corpus_from_lines, read_directory
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS
from lm_jax.models.rnn_model import RNNModel

REFERENCE_MODELS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")  # the reference's --model names
CELL_BY_GATES = {4: "lstm", 3: "gru"}  # one gate per unit: rnn_tanh or rnn_relu, which no tensor tells apart


@dataclasses.dataclass(frozen=True)
class ModelShape:
  vocab_size: int
  emsize: int
  nhid: int
  nlayers: int
  cell: str
  tied: bool

  @classmethod
  def of(cls, model: RNNModel) -> ModelShape:
    return cls(model.vocab_size, model.emsize, model.nhid, model.nlayers, model.cell, model.tied)


def parse_cell(name: str) -> str:
  """The lm_jax cell for a reference --model name (LSTM, GRU, RNN_TANH, RNN_RELU), in any case."""
  if name.lower() not in CELLS:
    raise UserError(f"unknown cell {name!r}; pass --cell={', '.join(REFERENCE_MODELS)}")
  return name.lower()


def reference_layout(shape: ModelShape) -> dict[str, tuple[str, tuple[int, ...]]]:
  """Reference state_dict name -> (lm_jax parameter name, reference tensor shape), in the reference's
  order. A tied decoder's weight is the embedding."""
  gates = CELLS[shape.cell].num_gates * shape.nhid
  layout = {"encoder.weight": ("embedding", (shape.vocab_size, shape.emsize))}
  for k in range(shape.nlayers):
    inputs = shape.emsize if k == 0 else shape.nhid
    layout[f"rnn.weight_ih_l{k}"] = (f"layer_{k}_w_ih", (gates, inputs))
    layout[f"rnn.weight_hh_l{k}"] = (f"layer_{k}_w_hh", (gates, shape.nhid))
    layout[f"rnn.bias_ih_l{k}"] = (f"layer_{k}_b_ih", (gates,))
    layout[f"rnn.bias_hh_l{k}"] = (f"layer_{k}_b_hh", (gates,))
  layout["decoder.weight"] = ("embedding" if shape.tied else "decoder_weight", (shape.vocab_size, shape.nhid))
  layout["decoder.bias"] = ("decoder_bias", (shape.vocab_size,))
  return layout


def _transposed(reference_name: str) -> bool:
  """PyTorch keeps recurrent weights as [G*H, I] for W x; lm_jax as [I, G*H] for x @ W."""
  return reference_name.startswith("rnn.weight_")


def infer_shape(state_dict: Mapping[str, np.ndarray], cell: str | None = None) -> ModelShape:
  """The model shape a reference state_dict holds. `cell` (an lm_jax or reference name) is needed
  only for one-gate RNNs, where tanh and relu have the same tensors."""
  required = ("encoder.weight", "rnn.weight_hh_l0", "decoder.weight")
  missing = [name for name in required if name not in state_dict]
  if missing:
    raise UserError(f"the checkpoint is not a word_language_model RNNModel (it has no {missing[0]}); "
                    "import an RNNModel saved by the reference's main.py")
  vocab_size, emsize = state_dict["encoder.weight"].shape
  gates_x_nhid, nhid = state_dict["rnn.weight_hh_l0"].shape
  gates = gates_x_nhid // nhid
  nlayers = 0
  while f"rnn.weight_ih_l{nlayers}" in state_dict:
    nlayers += 1
  decoder = state_dict["decoder.weight"]
  # The reference ties by sharing one tensor, so a tied state_dict holds it under both names.
  tied = decoder.shape == (vocab_size, emsize) and np.array_equal(decoder, state_dict["encoder.weight"])
  shape = ModelShape(vocab_size, emsize, nhid, nlayers, _cell_for(gates, cell), tied)
  _check_tensors(state_dict, shape)
  return shape


def _cell_for(gates: int, cell: str | None) -> str:
  if cell is None:
    if gates == 1:
      raise UserError("the checkpoint is a plain RNN, and RNN_TANH and RNN_RELU have the same tensors; "
                      "pass the reference's --model as --cell=RNN_TANH or --cell=RNN_RELU")
    if gates not in CELL_BY_GATES:
      raise UserError(f"the checkpoint's rnn has {gates} gates per unit, which no reference model has "
                      "(LSTM 4, GRU 3, RNN 1); import an RNNModel saved by the reference's main.py")
    return CELL_BY_GATES[gates]
  cell = parse_cell(cell)
  if CELLS[cell].num_gates != gates:
    raise UserError(f"--cell={cell.upper()} has {CELLS[cell].num_gates} gates per unit but the checkpoint's "
                    f"rnn has {gates}; pass the --cell the model was trained with, or omit it")
  return cell


def _check_tensors(state_dict: Mapping[str, np.ndarray], shape: ModelShape) -> None:
  """Every tensor the shape implies is there with its shape, and nothing else (bidirectional, ...)."""
  layout = reference_layout(shape)
  for name, (_, expected) in layout.items():
    if name not in state_dict:
      raise UserError(f"the checkpoint has no {name}; import a whole RNNModel state_dict")
    if tuple(state_dict[name].shape) != expected:
      raise UserError(f"the checkpoint's {name} is {list(state_dict[name].shape)}, not {list(expected)} as "
                      "its encoder.weight and rnn.weight_hh_l0 imply; import an unmodified RNNModel")
  unexpected = sorted(set(state_dict) - set(layout))
  if unexpected:
    raise UserError(f"the checkpoint has tensors no reference RNNModel has ({', '.join(unexpected[:3])}); "
                    "import a unidirectional RNNModel saved by the reference's main.py")


def import_state_dict(state_dict: Mapping[str, np.ndarray],
                      cell: str | None = None) -> tuple[ModelShape, dict[str, np.ndarray]]:
  """A reference state_dict (numpy arrays) -> its shape and lm_jax parameters, in its own dtype."""
  shape = infer_shape(state_dict, cell)
  params = {}
  for name, (param_name, _) in reference_layout(shape).items():
    tensor = np.asarray(state_dict[name])
    # A tied decoder.weight maps to the embedding too; it was checked equal, so either copy will do.
    params[param_name] = tensor.T if _transposed(name) else tensor
  return shape, params


def export_state_dict(model: RNNModel, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """lm_jax parameters of `model` -> the reference's state_dict, as C-ordered numpy arrays."""
  state_dict = {}
  for name, (param_name, _) in reference_layout(ModelShape.of(model)).items():
    array = np.asarray(params[param_name])
    state_dict[name] = np.array(array.T if _transposed(name) else array, order="C")
  return state_dict


def to_torch(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """numpy state_dict -> torch tensors, ready for the reference's `model.load_state_dict`."""
  import torch  # Optional: only this and reading checkpoints need it.

  return {name: torch.from_numpy(np.array(array, order="C")) for name, array in state_dict.items()}


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The state_dict in a torch.save file (of a state_dict, or of a whole model as the reference saves
  by default, read by lm_jax.torch_pickle without the reference's source), as float32 numpy arrays."""
  try:
    import torch  # Optional: `pip install 'lm_jax[torch]'`.
  except ImportError:
    raise UserError("reading a PyTorch checkpoint needs torch; install it with "
                    "`pip install 'lm_jax[torch]'`") from None
  if not os.path.isfile(path):
    raise UserError(f"checkpoint {path!r} does not exist; pass the file the reference's --save wrote")
  saved = _torch_load(torch, path)
  if isinstance(saved, torch_pickle.PickledModule):
    saved = torch_pickle.state_dict(saved)
  if not isinstance(saved, Mapping) or not all(isinstance(t, torch.Tensor) for t in saved.values()):
    raise UserError(f"{path} holds a {type(saved).__name__}, not a state_dict or model; save one in PyTorch "
                    "with `torch.save(model.state_dict(), path)`")
  return {name: t.detach().cpu().float().numpy() for name, t in saved.items()}


def _torch_load(torch: Any, path: str) -> Any:
  try:
    return torch.load(path, map_location="cpu", weights_only=True)  # A state_dict: no code runs.
  except Exception:  # Any failure here may just mean a whole pickled model: try that next.
    pass
  try:
    # A whole model: only the reference's classes are resolved, as attribute holders; no code runs.
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=torch_pickle)
  except torch_pickle.RefusedGlobal as e:
    raise UserError(f"{path} refers to {e.name}, which no word_language_model model holds, so it was not "
                    "loaded (nothing in it ran); import a model saved by the reference's main.py, or save the "
                    "weights with `torch.save(model.state_dict(), path)` and import that") from None
  except Exception as e:
    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise UserError(f"{path} is neither a state_dict nor a model torch can unpickle here ({reason}); save "
                    "the weights in PyTorch with `torch.save(model.state_dict(), path)` and import that") from None


def import_checkpoint(checkpoint: str, data_dir: str, workdir: str, cell: str | None = None,
                      overwrite: bool = False) -> ModelShape:
  """Writes a reference checkpoint into `workdir` as an lm_jax run whose best checkpoint is the model,
  with the vocabulary of `data_dir` (the data it was trained on) and the reference config."""
  shape, params = import_state_dict(read_torch_checkpoint(checkpoint), cell)
  corpus = corpus_from_lines(read_directory(data_dir))
  if len(corpus.vocab) != shape.vocab_size:
    raise UserError(f"the checkpoint's vocabulary has {shape.vocab_size:,} words but {data_dir!r} has "
                    f"{len(corpus.vocab):,}; pass the --data_dir the model was trained on")
  config = config_lib.reference_config()
  config.data.update(source="dir", dir=data_dir)
  config.model.update(cell=shape.cell, emsize=shape.emsize, nhid=shape.nhid, nlayers=shape.nlayers,
                      tied=shape.tied)
  config_lib.validate(config)
  if not overwrite and os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
    raise UserError(f"workdir {workdir!r} already holds a run; pass --overwrite to replace it, "
                    "or use another --workdir")
  workdir_lib.prepare(workdir, config, resume=False, overwrite=overwrite)
  params = {name: np.asarray(array, np.float32) for name, array in params.items()}
  meta = {"vocab": list(corpus.vocab.words), "config": config.to_dict(), "epoch": 0, "val_loss": None}
  checkpoints.save(workdir, checkpoints.BEST, 0, {"params": params}, meta)
  return shape
