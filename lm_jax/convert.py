"""Conversion between PyTorch checkpoints and lm_jax models, through the converter registry: one module per
reference model (CONVERTERS: word_language_model's RNNModel and TransformerModel, awd-lstm-lm's RNNModel) that
knows its state_dict and the lm_jax family (KIND) it maps to. The conversion works on numpy arrays of any dtype and
needs no torch; only reading and writing torch files (`read_torch_file`, `to_torch`, `save_torch`) imports it,
lazily. lm-jax-import and lm-jax-export are its commands (docs/fidelity.md, docs/awd.md).
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Callable, Mapping

import numpy as np

from lm_jax import checkpoints, config as config_lib, torch_pickle, workdir as workdir_lib
from lm_jax.data.sources import corpus_from_lines, read_directory
from lm_jax.errors import UserError
from lm_jax.models import awd_convert, rnn_convert, transformer_convert
from lm_jax.models.interface import LanguageModel, Params

# reference -> the module converting its state_dicts: KIND (the lm_jax family), REFERENCE_CLASS, missing,
# reference_layout, import_state_dict, export_state_dict, and optionally constructor_call (the reference's code
# that builds the model a state_dict loads into). The first of a kind that holds a model is what it exports to by
# default.
CONVERTERS = {"word_language_model": rnn_convert, "awd-lstm-lm": awd_convert,
              "word_language_model-transformer": transformer_convert}


def import_state_dict(state_dict: Mapping[str, np.ndarray], cell: str | None = None,
                      nhead: int | None = None) -> tuple[LanguageModel, dict[str, np.ndarray]]:
  """A reference state_dict (numpy arrays) -> its model and lm_jax parameters, by the family it holds.
  The reference's flags that no tensor records: `cell`, its --model where the tensors cannot tell (RNN_TANH
  vs RNN_RELU); `nhead`, a TransformerModel's --nhead (default 2). Each is refused for the other family."""
  for converter in CONVERTERS.values():
    if converter.missing(state_dict) is None:
      return converter.import_state_dict(state_dict, cell, nhead)
  reasons = "; ".join(f"{c.REFERENCE_CLASS}: it has no {c.missing(state_dict)}" for c in CONVERTERS.values())
  raise UserError(f"the checkpoint is no model lm_jax imports ({reasons}); import a model saved by the "
                  "reference's main.py")


def fits(model: LanguageModel, params: Params, reference: str) -> bool:
  """Whether `reference`'s model holds `model`: its family, and a layout that takes every parameter at its shape
  (word_language_model's one-size layers do not take AWD-LSTM's last, smaller one)."""
  converter = CONVERTERS[reference]
  if converter.KIND != model.kind:
    return False
  try:
    exported = converter.export_state_dict(model, params)
  except UserError:  # a model the reference cannot build (awd-lstm-lm's plain RNN)
    return False
  return all(exported[name].shape == shape for name, (_, shape) in converter.reference_layout(model).items())


def reference_of(model: LanguageModel, params: Params, reference: str | None = None) -> str:
  """`reference` (default: the first whose model holds `model`), checked to hold it; else a UserError."""
  fitting = [name for name in CONVERTERS if fits(model, params, name)]
  if reference is None and fitting:
    return fitting[0]
  if reference not in fitting:
    instead = f"use one of {', '.join(fitting)}" if fitting else "no reference model holds it"
    target = repr(reference) if reference else "any reference"
    raise UserError(f"a {model.describe()} model does not export to {target}; {instead}")
  return reference


def export_state_dict(model: LanguageModel, params: Params, reference: str | None = None) -> dict[str, np.ndarray]:
  """lm_jax parameters of `model` -> `reference`'s state_dict (default: the first that holds the model), as
  C-ordered numpy arrays."""
  return CONVERTERS[reference_of(model, params, reference)].export_state_dict(model, params)


def load_instructions(model: LanguageModel, reference: str, path: str) -> str:
  """How the reference's code loads an exported state_dict: its model built with the matching arguments where
  the converter knows them (awd-lstm-lm), else as the user built it."""
  constructor_call = getattr(CONVERTERS[reference], "constructor_call", None)
  build = f"m = {constructor_call(model)}; " if constructor_call else ""
  return f"{build}{'m' if build else 'model'}.load_state_dict(torch.load({path!r}))"


def to_torch(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """numpy state_dict -> torch tensors, ready for the reference's `model.load_state_dict`."""
  torch = require_torch("writing a PyTorch checkpoint")
  return {name: torch.from_numpy(np.array(array, order="C")) for name, array in state_dict.items()}


def save_torch(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """`torch.save` of the state_dict as torch tensors, written whole or not at all."""
  torch = require_torch("writing a PyTorch checkpoint")
  buffer = io.BytesIO()
  torch.save(to_torch(state_dict), buffer)
  workdir_lib.write_atomically(path, buffer.getvalue())


@dataclasses.dataclass(frozen=True)
class TorchFile:
  """What a torch file gives an import: the state_dict (float32 numpy), the model's settings the file records
  beyond its tensors (awd-lstm-lm's dropout rates), and, where it holds more than one set of weights, which
  was taken."""
  state_dict: dict[str, np.ndarray]
  model_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
  weights: str = ""


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The state_dict in a torch.save file, as float32 numpy arrays (read_torch_file)."""
  return read_torch_file(path).state_dict


def read_torch_file(path: str) -> TorchFile:
  """A torch.save file of a state_dict, of a whole model as the reference saves by default, or of awd-lstm-lm's
  main.py `[model, criterion, optimizer]`; pickles are read by lm_jax.torch_pickle without the reference's
  source."""
  torch = require_torch("reading a PyTorch checkpoint")
  if not os.path.isfile(path):
    raise UserError(f"checkpoint {path!r} does not exist; pass the file the reference's --save wrote")
  saved = _torch_load(torch, path)
  to_numpy: Callable[[Any], np.ndarray] = lambda t: t.detach().cpu().float().numpy()
  pickled_run = awd_convert.read_pickled(saved, to_numpy)
  if pickled_run is not None:
    return TorchFile(*pickled_run)
  if isinstance(saved, torch_pickle.PickledModule):
    saved = torch_pickle.state_dict(saved)
  if not isinstance(saved, Mapping) or not all(isinstance(t, torch.Tensor) for t in saved.values()):
    raise UserError(f"{path} holds a {type(saved).__name__}, not a state_dict or model; save one in PyTorch "
                    "with `torch.save(model.state_dict(), path)`")
  return TorchFile({name: to_numpy(t) for name, t in saved.items()})


def require_torch(purpose: str) -> Any:
  """torch, or a UserError naming `purpose` and the install command."""
  try:
    import torch  # Optional: `pip install 'lm_jax[torch]'`.
  except ImportError:
    raise UserError(f"{purpose} needs torch; install it with `pip install 'lm_jax[torch]'`") from None
  return torch


def _torch_load(torch: Any, path: str) -> Any:
  try:
    return torch.load(path, map_location="cpu", weights_only=True)  # A state_dict: no code runs.
  except Exception:  # Any failure here may just mean a whole pickled model: try that next.
    pass
  try:
    # A whole model: only the references' classes are resolved, as attribute holders; no code runs.
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=torch_pickle)
  except torch_pickle.RefusedGlobal as e:
    if e.name.startswith(f"{awd_convert.QRNN_MODULE}."):
      raise UserError(f"{path} holds a QRNN model ({e.name}); {awd_convert.UNSUPPORTED_QRNN}, so it was not "
                      "loaded (nothing in it ran)") from None
    raise UserError(f"{path} refers to {e.name}, which no word_language_model or awd-lstm-lm model holds, so it "
                    "was not loaded (nothing in it ran); import a model saved by the reference's main.py, or save "
                    "the weights with `torch.save(model.state_dict(), path)` and import that") from None
  except Exception as e:
    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise UserError(f"{path} is neither a state_dict nor a model torch can unpickle here ({reason}); save "
                    "the weights in PyTorch with `torch.save(model.state_dict(), path)` and import that") from None


def import_checkpoint(checkpoint: str, data_dir: str, workdir: str, cell: str | None = None,
                      overwrite: bool = False, nhead: int | None = None,
                      report: Callable[[str], None] = lambda line: None) -> LanguageModel:
  """Writes a reference checkpoint into `workdir` as an lm_jax run whose best checkpoint is the model,
  with the vocabulary of `data_dir` (the data it was trained on) and the reference config; `report` gets a
  line naming the weights taken when the file holds more than one set."""
  read = read_torch_file(checkpoint)
  model, params = import_state_dict(read.state_dict, cell, nhead)
  model = dataclasses.replace(model, **read.model_fields)
  corpus = corpus_from_lines(read_directory(data_dir))
  if len(corpus.vocab) != model.vocab_size:
    raise UserError(f"the checkpoint's vocabulary has {model.vocab_size:,} words but {data_dir!r} has "
                    f"{len(corpus.vocab):,}; pass the --data_dir the model was trained on")
  config = config_lib.reference_config()
  config.data.update(source="dir", dir=data_dir)
  config.model.update(**model.config_fields())
  config_lib.validate(config)
  if not overwrite and os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
    raise UserError(f"workdir {workdir!r} already holds a run; pass --overwrite to replace it, "
                    "or use another --workdir")
  workdir_lib.prepare(workdir, config, resume=False, overwrite=overwrite)
  params = {name: np.asarray(array, np.float32) for name, array in params.items()}
  meta = {"vocab": list(corpus.vocab.words), "config": config.to_dict(), "epoch": 0, "val_loss": None}
  checkpoints.save(workdir, checkpoints.BEST, 0, {"params": params}, meta)
  if read.weights:
    report(f"| took {read.weights}")
  return model
