"""The RNN family's converter for salesforce/awd-lstm-lm checkpoints: its RNNModel's state_dict <->
lm_jax parameters, and what its main.py and finetune.py pickle.

AWD-LSTM keeps one single-layer torch LSTM per layer (`rnns.K`), wrapped by WeightDrop when weight
drop is on, which renames the hidden-to-hidden matrix: `rnns.K.module.weight_hh_l0_raw`; without it,
`rnns.K.weight_hh_l0`. The last layer has emsize units when tied. On current PyTorch a model saved after an
evaluation also holds the matrix WeightDrop last set, `rnns.K.module.weight_hh_l0`: the raw one (the same
tensor), or, saved after a training step, its dropped copy (each weight zeroed or scaled by 1/(1-p)). It is
checked to be one of those and left out; a file holding only it imports it as the weights. Dropout rates are
not in a state_dict: an import gets AWD-LSTM's main.py defaults (weight drop only if the checkpoint had it), a
pickled model its own.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import numpy as np

from lm_jax.errors import UserError
from lm_jax.models import layout
from lm_jax.models.cells import CELLS
from lm_jax.models.rnn_model import RNNModel, layer_sizes
from lm_jax.torch_pickle import PickledModule, state_dict as module_state_dict

KIND = RNNModel.kind
REFERENCE_CLASS = "awd-lstm-lm RNNModel"
CELL_BY_GATES = {4: "lstm", 3: "gru"}
MAIN_PY_DROPOUT = dict(dropout=0.4, dropouth=0.3, dropouti=0.65, dropoute=0.1)  # awd-lstm-lm main.py defaults
QRNN_TENSOR = re.compile(r"rnns\.\d+\.linear\.")  # a torchqrnn QRNNLayer's linear map, WeightDrop-wrapped or not
QRNN_MODULE = "torchqrnn"
UNSUPPORTED_QRNN = "lm_jax imports awd-lstm-lm's LSTM and GRU models, not its QRNN (torchqrnn) layers"


def _prefix(state_dict: Mapping[str, np.ndarray], k: int) -> str:
  wrapped = f"rnns.{k}.module."
  return wrapped if f"{wrapped}weight_ih_l0" in state_dict else f"rnns.{k}."


def _hh_name(state_dict: Mapping[str, np.ndarray], k: int) -> str:
  raw = f"rnns.{k}.module.weight_hh_l0_raw"
  return raw if raw in state_dict else f"{_prefix(state_dict, k)}weight_hh_l0"


def _qrnn_tensor(state_dict: Mapping[str, np.ndarray]) -> str | None:
  return next((name for name in state_dict if QRNN_TENSOR.match(name)), None)


def missing(state_dict: Mapping[str, np.ndarray]) -> str | None:
  """The first tensor an awd-lstm-lm RNNModel state_dict must have and this one lacks, if any. None for a
  QRNN model's too, which import_state_dict then refuses by name."""
  if "encoder.weight" in state_dict and _qrnn_tensor(state_dict):
    return None
  required = ("encoder.weight", f"{_prefix(state_dict, 0)}weight_ih_l0", "decoder.weight")
  return next((name for name in required if name not in state_dict), None)


def is_dropped_copy(copy: np.ndarray, raw: np.ndarray) -> bool:
  """Whether `copy` is `raw`, or WeightDrop's F.dropout(raw, p) for some p: every weight either 0 or raw's
  times the one factor 1/(1-p) >= 1."""
  if copy.shape != raw.shape:
    return False
  kept = copy != 0
  if not np.all(raw[kept] != 0):
    return False
  if not kept.any():
    return True
  scale = np.median(copy[kept] / raw[kept])
  return bool(scale >= 1 and np.allclose(copy[kept], raw[kept] * scale, rtol=1e-6, atol=0))


def without_eval_copies(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The state_dict without the matrices WeightDrop left beside the raw ones (checked to be copies of them);
  a layer holding only that matrix keeps it, as its raw one."""
  cleaned = {}
  for name, array in state_dict.items():
    raw = f"{name}_raw"
    if not re.fullmatch(r"rnns\.\d+\.module\.weight_hh_l0", name):
      cleaned[name] = array
    elif raw not in state_dict:
      cleaned[raw] = array
    elif not is_dropped_copy(np.asarray(array), np.asarray(state_dict[raw])):
      raise UserError(f"the checkpoint's {name} is neither its weight_hh_l0_raw nor a weight-dropped copy of it "
                      "(each weight 0 or scaled by 1/(1-p)); import a model saved by awd-lstm-lm's main.py")
  return cleaned


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
  qrnn = _qrnn_tensor(state_dict)
  if qrnn:
    raise UserError(f"the checkpoint is a QRNN model ({qrnn}); {UNSUPPORTED_QRNN}")
  state_dict = without_eval_copies(state_dict)
  model = infer_model(state_dict)
  if cell is not None and cell.lower() != model.cell:
    raise UserError(f"--cell={cell.upper()} but the checkpoint holds a {model.cell.upper()}; omit --cell")
  return model, layout.params_from(state_dict, reference_layout(model), _transposed)


def export_state_dict(model: RNNModel, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """lm_jax parameters -> an awd-lstm-lm state_dict, as C-ordered numpy arrays."""
  if model.cell not in CELL_BY_GATES.values():
    raise UserError(f"awd-lstm-lm's RNNModel has LSTM and GRU layers, not {model.cell.upper()}; export to "
                    "word_language_model")
  return layout.state_dict_from(params, reference_layout(model), _transposed)


def constructor_call(model: RNNModel) -> str:
  """The awd-lstm-lm model.py call that builds the RNNModel an exported state_dict loads into."""
  return (f"model.RNNModel('{model.cell.upper()}', {model.vocab_size}, {model.emsize}, {model.nhid}, {model.nlayers}, "
          f"{model.dropout}, {model.dropouth}, {model.dropouti}, {model.dropoute}, {model.wdrop}, {model.tied})")


# --- what awd-lstm-lm's scripts pickle: main.py `[model, criterion, optimizer]`, finetune.py the model ---------------

OPTIMIZERS = {"torch.optim.sgd.SGD": "SGD", "torch.optim.asgd.ASGD": "ASGD", "torch.optim.adam.Adam": "Adam"}
PickledRun = tuple[dict[str, np.ndarray], dict[str, float], str]


def _is_model(saved: Any) -> bool:
  return (isinstance(saved, PickledModule) and saved.pickled_class == "model.RNNModel"
          and "rnns" in saved.attributes.get("_modules", {}))


def read_pickled(saved: Any, to_numpy: Callable[[Any], np.ndarray]) -> PickledRun | None:
  """awd-lstm-lm's pickled `[model, criterion, optimizer]` (main.py) or model (finetune.py), as
  lm_jax.torch_pickle reads them -> (the state_dict, each tensor through `to_numpy`; the model's dropout rates
  as RNNModel fields; which weights were taken, in words); None for anything else. Under ASGD the weights are
  the averages `optimizer.state[p]['ax']`: main.py copies them into the model before it evaluates and saves."""
  if _is_model(saved):
    (model, criterion, optimizer), source = (saved, None, None), "finetune.py's pickled model"
  elif isinstance(saved, (list, tuple)) and saved and _is_model(saved[0]):
    classes = [getattr(part, "pickled_class", type(part).__name__) for part in saved]
    if len(saved) != 3 or classes[1] != "splitcross.SplitCrossEntropyLoss" or classes[2] not in OPTIMIZERS:
      raise UserError(f"the file holds [{', '.join(classes)}], not the [model, criterion, optimizer] awd-lstm-lm's "
                      "main.py saves; import a file its main.py wrote")
    (model, criterion, optimizer), source = saved, "main.py's [model, criterion, optimizer]"
  else:
    return None
  training = _training_fields(model)
  _check_criterion(criterion)
  tensors = module_state_dict(model)
  averages = _asgd_averages(optimizer, tensors)
  state_dict = {name: to_numpy(averages.get(id(t), t)) for name, t in tensors.items()}
  return state_dict, training, f"{source}: {_which_weights(optimizer, tensors, averages, state_dict, to_numpy)}"


def _training_fields(model: PickledModule) -> dict[str, float]:
  """The rates model.py keeps as attributes (main.py --resume updates them), and WeightDrop's."""
  attributes = model.attributes
  if attributes.get("rnn_type") == "QRNN":
    raise UserError(f"the file holds a QRNN model; {UNSUPPORTED_QRNN}")
  rates = {name: float(attributes.get(name, default)) for name, default in MAIN_PY_DROPOUT.items()}
  rnns = attributes["_modules"]["rnns"].attributes.get("_modules", {}).values()
  wdrop = [rnn.attributes.get("dropout", 0.0) for rnn in rnns if rnn.pickled_class == "weight_drop.WeightDrop"]
  return {**rates, "wdrop": float(wdrop[0]) if wdrop else 0.0}


def _check_criterion(criterion: PickledModule | None) -> None:
  """main.py's SplitCrossEntropyLoss has no tail clusters up to 75,000 words: it is then the full softmax."""
  splits = list(criterion.attributes.get("splits", [])) if criterion is not None else []
  if len(splits) > 2:
    raise UserError(f"the file's criterion is a SplitCrossEntropyLoss with {len(splits) - 2} tail clusters (splits at "
                    f"{', '.join(map(str, splits[1:-1]))}: main.py's choice above 75,000 words), a two-level softmax "
                    "lm_jax does not model; lm_jax imports awd-lstm-lm models scored by the full softmax")


def _asgd_averages(optimizer: PickledModule | None, tensors: Mapping[str, Any]) -> dict[int, Any]:
  """id(parameter) -> its ASGD average `ax`; empty before ASGD (or its first step). The optimizer's state is
  keyed by the model's own parameter objects, which the pickle keeps identical."""
  if optimizer is None or optimizer.pickled_class != "torch.optim.asgd.ASGD":
    return {}
  state = optimizer.attributes.get("state", {})
  averages = {id(p): s["ax"] for p, s in state.items() if isinstance(s, dict) and "ax" in s}
  lacking = [name for name, t in tensors.items() if id(t) not in averages]
  if averages and lacking:
    raise UserError(f"the file's ASGD state averages some parameters but not {lacking[0]}; import a file "
                    "awd-lstm-lm's main.py wrote")
  return averages


def _which_weights(optimizer: PickledModule | None, tensors: Mapping[str, Any], averages: Mapping[int, Any],
                   taken: Mapping[str, np.ndarray], to_numpy: Callable[[Any], np.ndarray]) -> str:
  if optimizer is None:
    return "the model's parameters (finetune.py saves them holding ASGD's averages)"
  name = OPTIMIZERS[optimizer.pickled_class]
  if not averages:
    return f"the model's parameters, which main.py evaluated and saved (optimizer {name}, no averages)"
  same = all(np.array_equal(to_numpy(t), taken[n]) for n, t in tensors.items())
  return ("the ASGD averages optimizer.state[p]['ax'], which main.py copies into the model to evaluate and save "
          + ("(equal to the model's parameters)" if same else "(not the model's parameters: its last iterate)"))
