"""The RNN family's converter: PyTorch word_language_model RNNModel state_dicts <-> lm_jax parameters.

The reference's state_dict maps one to one onto lm_jax's parameters (the layout is in
lm_jax/models/rnn_model.py): the recurrent weight matrices are transposed to the x @ W layout,
everything else is copied, and the gate order (LSTM i, f, g, o; GRU r, z, n) is PyTorch's already.
Works on numpy arrays of any dtype and needs no torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from lm_jax.errors import UserError
from lm_jax.models import layout
from lm_jax.models.cells import CELLS
from lm_jax.models.rnn_model import RNNModel

KIND = RNNModel.kind
REFERENCE_CLASS = "word_language_model RNNModel"
REFERENCE_MODELS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")  # the reference's --model names
CELL_BY_GATES = {4: "lstm", 3: "gru"}  # one gate per unit: rnn_tanh or rnn_relu, which no tensor tells apart


REQUIRED = ("encoder.weight", "rnn.weight_hh_l0", "decoder.weight")  # what tells the shape


def missing(state_dict: Mapping[str, np.ndarray]) -> str | None:
  """The first tensor an RNNModel state_dict must have and this one lacks, if any."""
  return next((name for name in REQUIRED if name not in state_dict), None)


def parse_cell(name: str) -> str:
  """The lm_jax cell for a reference --model name (LSTM, GRU, RNN_TANH, RNN_RELU), in any case."""
  if name.lower() not in CELLS:
    raise UserError(f"unknown cell {name!r}; pass --cell={', '.join(REFERENCE_MODELS)}")
  return name.lower()


def reference_layout(model: RNNModel) -> dict[str, tuple[str, tuple[int, ...]]]:
  """Reference state_dict name -> (lm_jax parameter name, reference tensor shape), in the reference's
  order. A tied decoder's weight is the embedding."""
  gates = CELLS[model.cell].num_gates * model.nhid
  layout = {"encoder.weight": ("embedding", (model.vocab_size, model.emsize))}
  for k in range(model.nlayers):
    inputs = model.emsize if k == 0 else model.nhid
    layout[f"rnn.weight_ih_l{k}"] = (f"layer_{k}_w_ih", (gates, inputs))
    layout[f"rnn.weight_hh_l{k}"] = (f"layer_{k}_w_hh", (gates, model.nhid))
    layout[f"rnn.bias_ih_l{k}"] = (f"layer_{k}_b_ih", (gates,))
    layout[f"rnn.bias_hh_l{k}"] = (f"layer_{k}_b_hh", (gates,))
  layout["decoder.weight"] = ("embedding" if model.tied else "decoder_weight", (model.vocab_size, model.nhid))
  layout["decoder.bias"] = ("decoder_bias", (model.vocab_size,))
  return layout


def _transposed(reference_name: str) -> bool:
  """PyTorch keeps recurrent weights as [G*H, I] for W x; lm_jax as [I, G*H] for x @ W."""
  return reference_name.startswith("rnn.weight_")


def infer_model(state_dict: Mapping[str, np.ndarray], cell: str | None = None) -> RNNModel:
  """The model a reference state_dict holds (the reference's default hyperparameters). `cell` (an lm_jax
  or reference name) is needed only for one-gate RNNs, where tanh and relu have the same tensors."""
  vocab_size, emsize = state_dict["encoder.weight"].shape
  gates_x_nhid, nhid = state_dict["rnn.weight_hh_l0"].shape
  gates = gates_x_nhid // nhid
  nlayers = 0
  while f"rnn.weight_ih_l{nlayers}" in state_dict:
    nlayers += 1
  decoder = state_dict["decoder.weight"]
  # The reference ties by sharing one tensor, so a tied state_dict holds it under both names.
  tied = decoder.shape == (vocab_size, emsize) and np.array_equal(decoder, state_dict["encoder.weight"])
  model = RNNModel(vocab_size, _cell_for(gates, cell), emsize, nhid, nlayers, tied=tied)
  _check_tensors(state_dict, model)
  return model


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


def _check_tensors(state_dict: Mapping[str, np.ndarray], model: RNNModel) -> None:
  """Every tensor the model implies is there with its shape, and nothing else (bidirectional, ...)."""
  layout = reference_layout(model)
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


def import_state_dict(state_dict: Mapping[str, np.ndarray], cell: str | None = None,
                      nhead: int | None = None) -> tuple[RNNModel, dict[str, np.ndarray]]:
  """A reference state_dict (numpy arrays) -> its model and lm_jax parameters, in its own dtype."""
  if nhead is not None:
    raise UserError(f"--nhead={nhead} is a TransformerModel's, but the checkpoint is an RNNModel; omit --nhead")
  model = infer_model(state_dict, cell)
  return model, layout.params_from(state_dict, reference_layout(model), _transposed)


def export_state_dict(model: RNNModel, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """lm_jax parameters of `model` -> the reference's state_dict, as C-ordered numpy arrays."""
  if model.cell not in CELLS:  # the Mogrifier LSTM, whose gating matrices the reference has no place for
    raise UserError(f"word_language_model's RNNModel has no {model.cell} cell; only "
                    f"{', '.join(REFERENCE_MODELS)} export")
  return layout.state_dict_from(params, reference_layout(model), _transposed)
