"""Conversion between PyTorch checkpoints and lm_jax models, through the converter registry: one module per
reference model (CONVERTERS: word_language_model's RNNModel, awd-lstm-lm's RNNModel) that knows its
state_dict and the lm_jax family (KIND) it maps to. The conversion works on numpy arrays of any dtype and needs no torch; only
`read_torch_checkpoint` and `to_torch` import it, lazily.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from lm_jax import checkpoints, config as config_lib, torch_pickle, workdir as workdir_lib
from lm_jax.data.sources import corpus_from_lines, read_directory
from lm_jax.errors import UserError
from lm_jax.models import awd_convert, rnn_convert, transformer_convert
from lm_jax.models.interface import LanguageModel, Params

# reference -> the module converting its state_dicts: KIND (the lm_jax family), REFERENCE_CLASS, missing,
# import_state_dict, export_state_dict. The first of a kind is what its models export to by default.
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


def export_state_dict(model: LanguageModel, params: Params, reference: str | None = None) -> dict[str, np.ndarray]:
  """lm_jax parameters of `model` -> `reference`'s state_dict (default: the first for its family), as
  C-ordered numpy arrays."""
  if reference is None:
    reference = next(name for name, converter in CONVERTERS.items() if converter.KIND == model.kind)
  if reference not in CONVERTERS or CONVERTERS[reference].KIND != model.kind:
    raise UserError(f"a {model.kind} model does not export to {reference!r}; use one of "
                    f"{', '.join(n for n, c in CONVERTERS.items() if c.KIND == model.kind)}")
  return CONVERTERS[reference].export_state_dict(model, params)


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
                      overwrite: bool = False, nhead: int | None = None) -> LanguageModel:
  """Writes a reference checkpoint into `workdir` as an lm_jax run whose best checkpoint is the model,
  with the vocabulary of `data_dir` (the data it was trained on) and the reference config."""
  model, params = import_state_dict(read_torch_checkpoint(checkpoint), cell, nhead)
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
  return model
