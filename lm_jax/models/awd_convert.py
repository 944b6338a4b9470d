"""The RNN family's converter for salesforce/awd-lstm-lm checkpoints: its RNNModel's state_dict <->
lm_jax parameters.

AWD-LSTM keeps one single-layer torch LSTM per layer (`rnns.K`), wrapped by WeightDrop when weight
drop is on, which renames the hidden-to-hidden matrix: `rnns.K.module.weight_hh_l0_raw`; without it,
`rnns.K.weight_hh_l0`. The last layer has emsize units when tied. Dropout rates are not in a
state_dict: an import gets AWD-LSTM's main.py defaults (weight drop only if the checkpoint had it).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from lm_jax.errors import UserError
from lm_jax.models import layout
from lm_jax.models.cells import CELLS
from lm_jax.models.rnn_model import RNNModel, layer_sizes

KIND = RNNModel.kind
REFERENCE_CLASS = "awd-lstm-lm RNNModel"
CELL_BY_GATES = {4: "lstm", 3: "gru"}
MAIN_PY_DROPOUT = dict(dropout=0.4, dropouth=0.3, dropouti=0.65, dropoute=0.1)  # awd-lstm-lm main.py defaults


def _prefix(state_dict: Mapping[str, np.ndarray], k: int) -> str:
  wrapped = f"rnns.{k}.module."
  return wrapped if f"{wrapped}weight_ih_l0" in state_dict else f"rnns.{k}."


def _hh_name(state_dict: Mapping[str, np.ndarray], k: int) -> str:
  raw = f"rnns.{k}.module.weight_hh_l0_raw"
  return raw if raw in state_dict else f"{_prefix(state_dict, k)}weight_hh_l0"


def missing(state_dict: Mapping[str, np.ndarray]) -> str | None:
  """The first tensor an awd-lstm-lm RNNModel state_dict must have and this one lacks, if any."""
  required = ("encoder.weight", f"{_prefix(state_dict, 0)}weight_ih_l0", "decoder.weight")
  return next((name for name in required if name not in state_dict), None)


def reference_layout(model: RNNModel) -> dict[str, tuple[str, tuple[int, ...]]]:
  """awd-lstm-lm state_dict name -> (lm_jax parameter name, reference tensor shape), in its order."""
  gates = CELLS[model.cell].num_gates
  prefix = "rnns.{k}.module." if model.wdrop else "rnns.{k}."
  layout = {"encoder.weight": ("embedding", (model.vocab_size, model.emsize))}
  inputs = (model.emsize,) + model.sizes[:-1]
  for k, (size_in, size) in enumerate(zip(inputs, model.sizes)):
    p = prefix.format(k=k)
    layout[f"{p}weight_ih_l0"] = (f"layer_{k}_w_ih", (gates * size, size_in))
    layout[f"{p}bias_ih_l0"] = (f"layer_{k}_b_ih", (gates * size,))
    layout[f"{p}bias_hh_l0"] = (f"layer_{k}_b_hh", (gates * size,))
    layout[f"{p}weight_hh_l0_raw" if model.wdrop else f"{p}weight_hh_l0"] = (f"layer_{k}_w_hh", (gates * size, size))
  layout["decoder.weight"] = ("embedding" if model.tied else "decoder_weight", (model.vocab_size, model.sizes[-1]))
  layout["decoder.bias"] = ("decoder_bias", (model.vocab_size,))
  return layout


def _transposed(name: str) -> bool:
  return ".weight_" in name  # torch's LSTM matrices are [G*H, I]; lm_jax's [I, G*H]


def infer_model(state_dict: Mapping[str, np.ndarray]) -> RNNModel:
  vocab_size, emsize = state_dict["encoder.weight"].shape
  nlayers = 0
  while f"{_prefix(state_dict, nlayers)}weight_ih_l0" in state_dict:
    nlayers += 1
  gates_x_hid, nhid = state_dict[_hh_name(state_dict, 0)].shape
  if gates_x_hid // nhid not in CELL_BY_GATES:
    raise UserError(f"the checkpoint's first layer has {gates_x_hid // nhid} gates per unit, which no AWD-LSTM "
                    "cell has (LSTM 4, GRU 3); import an awd-lstm-lm RNNModel")
  decoder = state_dict["decoder.weight"]
  tied = decoder.shape == (vocab_size, emsize) and np.array_equal(decoder, state_dict["encoder.weight"])
  wdrop = 0.5 if "rnns.0.module.weight_hh_l0_raw" in state_dict else 0.0
  model = RNNModel(vocab_size, CELL_BY_GATES[gates_x_hid // nhid], emsize, nhid, nlayers, tied=tied,
                   locked_dropout=True, wdrop=wdrop, **MAIN_PY_DROPOUT)
  sizes = [state_dict[_hh_name(state_dict, k)].shape[1] for k in range(nlayers)]
  if tuple(sizes) != layer_sizes(nlayers, nhid, emsize, tied):
    raise UserError(f"the checkpoint's layers have {sizes} units, not the {list(model.sizes)} an awd-lstm-lm "
                    f"RNNModel of emsize {emsize} ({'tied' if tied else 'untied'}) has; import an unmodified one")
  layout = reference_layout(model)
  for name, (_, expected) in layout.items():
    if name not in state_dict or tuple(state_dict[name].shape) != expected:
      found = list(state_dict[name].shape) if name in state_dict else "missing"
      raise UserError(f"the checkpoint's {name} is {found}, not {list(expected)} as its encoder and layers imply; "
                      "import an unmodified awd-lstm-lm RNNModel")
  unexpected = sorted(set(state_dict) - set(layout))
  if unexpected:
    raise UserError(f"the checkpoint has tensors no awd-lstm-lm RNNModel has ({', '.join(unexpected[:3])}); import "
                    "an LSTM or GRU RNNModel saved by its main.py")
  return model


def import_state_dict(state_dict: Mapping[str, np.ndarray], cell: str | None = None,
                      nhead: int | None = None) -> tuple[RNNModel, dict[str, np.ndarray]]:
  """An awd-lstm-lm state_dict (numpy) -> its model and lm_jax parameters, in its own dtype. `cell` is
  not needed (the gates tell LSTM from GRU) and, if given, must agree."""
  if nhead is not None:
    raise UserError(f"--nhead={nhead} is a TransformerModel's, but the checkpoint is an RNNModel; omit --nhead")
  model = infer_model(state_dict)
  if cell is not None and cell.lower() != model.cell:
    raise UserError(f"--cell={cell.upper()} but the checkpoint holds a {model.cell.upper()}; omit --cell")
  return model, layout.params_from(state_dict, reference_layout(model), _transposed)


def export_state_dict(model: RNNModel, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """lm_jax parameters -> an awd-lstm-lm state_dict, as C-ordered numpy arrays."""
  return layout.state_dict_from(params, reference_layout(model), _transposed)
