"""The Transformer family's converter: PyTorch word_language_model TransformerModel state_dicts <-> lm_jax
parameters.

The state_dict maps one to one onto lm_jax's parameters (the layout is in lm_jax/models/transformer.py):
matrices are transposed to the x @ W layout, everything else is copied. Its `pos_encoder.pe` buffer is the
fixed sinusoid table, not a parameter: checked on import, recomputed on export. The number of heads is
in no tensor: `nhead` says it (the reference's --nhead, default 2). Works on numpy arrays of any dtype and
needs no torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from lm_jax.errors import UserError
from lm_jax.models import layout
from lm_jax.models.transformer import REFERENCE_MAX_LEN, TransformerModel, sinusoids

KIND = TransformerModel.kind
REFERENCE_CLASS = "word_language_model TransformerModel"
REFERENCE_NHEAD = 2  # the reference's --nhead default
PE = "pos_encoder.pe"
REQUIRED = ("input_emb.weight", "encoder.layers.0.linear1.weight", "decoder.weight")  # what tells the shape


def missing(state_dict: Mapping[str, np.ndarray]) -> str | None:
  """The first tensor a TransformerModel state_dict must have and this one lacks, if any."""
  return next((name for name in REQUIRED if name not in state_dict), None)


def reference_layout(model: TransformerModel) -> dict[str, tuple[str, tuple[int, ...]]]:
  """Reference parameter name -> (lm_jax parameter name, reference tensor shape), in the reference's
  state_dict order (pos_encoder.pe, a buffer, sits between decoder.bias and input_emb.weight)."""
  e, f = model.emsize, model.nhid
  layout = {}
  for k in range(model.nlayers):
    ref, ours = f"encoder.layers.{k}.", f"layer_{k}_"
    layout.update({
        ref + "self_attn.in_proj_weight": (ours + "in_proj", (3 * e, e)),
        ref + "self_attn.in_proj_bias": (ours + "in_proj_bias", (3 * e,)),
        ref + "self_attn.out_proj.weight": (ours + "out_proj", (e, e)),
        ref + "self_attn.out_proj.bias": (ours + "out_proj_bias", (e,)),
        ref + "linear1.weight": (ours + "linear1", (f, e)), ref + "linear1.bias": (ours + "linear1_bias", (f,)),
        ref + "linear2.weight": (ours + "linear2", (e, f)), ref + "linear2.bias": (ours + "linear2_bias", (e,)),
        **{ref + f"norm{n}.{part}": (ours + f"norm{n}_{kind}", (e,))
           for n in (1, 2) for part, kind in (("weight", "scale"), ("bias", "bias"))}})
  layout["encoder.norm.weight"] = ("final_norm_scale", (e,))
  layout["encoder.norm.bias"] = ("final_norm_bias", (e,))
  layout["decoder.weight"] = ("embedding" if model.transformer_tied else "decoder_weight", (model.vocab_size, e))
  layout["decoder.bias"] = ("decoder_bias", (model.vocab_size,))
  layout["input_emb.weight"] = ("embedding", (model.vocab_size, e))
  return layout


def _transposed(reference_name: str) -> bool:
  """PyTorch keeps matrices as [out, in] for W x; lm_jax as [in, out] for x @ W."""
  return reference_name.startswith("encoder.layers.") and reference_name.endswith("weight") and "norm" not in reference_name


def positional_table(emsize: int) -> np.ndarray:
  """The reference's pos_encoder.pe buffer, [5000, 1, E] float32."""
  return sinusoids(np.arange(REFERENCE_MAX_LEN), emsize, np)[:, None, :]


def infer_model(state_dict: Mapping[str, np.ndarray], nhead: int | None = None) -> TransformerModel:
  """The model a reference state_dict holds (the reference's other hyperparameters); `nhead` is the
  reference's --nhead, which no tensor records."""
  vocab_size, emsize = state_dict["input_emb.weight"].shape
  nhid = state_dict["encoder.layers.0.linear1.weight"].shape[0]
  nlayers = 0
  while f"encoder.layers.{nlayers}.linear1.weight" in state_dict:
    nlayers += 1
  nhead = REFERENCE_NHEAD if nhead is None else nhead
  if nhead <= 0 or emsize % nhead:
    raise UserError(f"--nhead={nhead} does not divide the checkpoint's emsize {emsize}; pass the reference's "
                    "--nhead the model was trained with")
  model = TransformerModel(vocab_size, emsize, nhead, nhid, nlayers)
  _check_tensors(state_dict, model)
  return model


def _check_tensors(state_dict: Mapping[str, np.ndarray], model: TransformerModel) -> None:
  """Every tensor the model implies is there with its shape, the positional table is the reference's,
  and nothing else is there."""
  layout = reference_layout(model)
  for name, (_, expected) in layout.items():
    if name not in state_dict:
      raise UserError(f"the checkpoint has no {name}; import a whole TransformerModel state_dict")
    if tuple(state_dict[name].shape) != expected:
      raise UserError(f"the checkpoint's {name} is {list(state_dict[name].shape)}, not {list(expected)} as "
                      "its input_emb.weight and linear1.weight imply; import an unmodified TransformerModel")
  if PE in state_dict:  # a persistent buffer: there unless someone dropped it; the model does not need it
    table = np.asarray(state_dict[PE], np.float32)
    expected = positional_table(model.emsize)
    if table.shape != expected.shape or not np.allclose(table, expected, rtol=0, atol=1e-4):
      raise UserError(f"the checkpoint's {PE} is not the reference's sinusoid table ({REFERENCE_MAX_LEN} x "
                      f"{model.emsize}); import an unmodified TransformerModel")
  unexpected = sorted(set(state_dict) - set(layout) - {PE})
  if unexpected:
    raise UserError(f"the checkpoint has tensors no reference TransformerModel has ({', '.join(unexpected[:3])}); "
                    "import a TransformerModel saved by the reference's main.py")


def import_state_dict(state_dict: Mapping[str, np.ndarray], cell: str | None = None,
                      nhead: int | None = None) -> tuple[TransformerModel, dict[str, np.ndarray]]:
  """A reference state_dict (numpy arrays) -> its model and lm_jax parameters, in its own dtype."""
  if cell is not None:
    raise UserError(f"--cell={cell} names an RNNModel's cell, but the checkpoint is a TransformerModel; "
                    "omit --cell")
  model = infer_model(state_dict, nhead)
  return model, layout.params_from(state_dict, reference_layout(model), _transposed)


def export_state_dict(model: TransformerModel, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """lm_jax parameters of `model` -> the reference's state_dict (pe included), as C-ordered numpy arrays. A
  transformer_tied model's decoder.weight is the embedding, which the reference's untied model then copies."""
  if model.pre_norm or model.memory or model.positions != "absolute":
    raise UserError("the reference's TransformerModel has no pre_norm, memory or relative positions, so this model "
                    "has no equivalent there; export a model trained with --config.model.pre_norm=False, "
                    "--config.model.memory=0 and --config.model.positions=absolute")
  state_dict = {}
  for name, array in layout.state_dict_from(params, reference_layout(model), _transposed).items():
    if name == "input_emb.weight":  # the reference's fixed pe buffer comes just before it
      state_dict[PE] = positional_table(model.emsize)
    state_dict[name] = array
  return state_dict
