"""A trained model for serving outside lm_jax: jax.export's serialized StableHLO of scoring and of one generation
step, with the weights and the vocabulary, in one zip file (docs/serving.md):

  manifest.json     the model, the vocabulary, the shapes each function accepts, the state's arrays
  score.stablehlo   score(weights, tokens int32[batch, steps], state) -> (logits float32[batch, steps, V], state)
  step.stablehlo    step(weights, token int32[batch], state) -> (logits float32[batch, V], state)
  weights.npz       the parameters by name: both functions' `weights` argument

`batch` and `steps` are symbolic (jax.export's shape polymorphism): one program serves any batch and any number of
steps. The state is the family's decoding carry (`init_decoding_carry`, what generation feeds one word at a time:
an RNN's per-layer state, a Transformer's key/value cache of `context` positions and each column's position)
flattened to a list, all zeros at the start of a text. Both functions are the family's `features` then `logits`,
the model path of training, evaluation and generation; a step is scoring one token.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.models.interface import LanguageModel, Params

FORMAT, VERSION = "lm_jax.serving", 1
MANIFEST, WEIGHTS = "manifest.json", "weights.npz"
# Settings that change how a model computes, not what: the serving program takes those that lower for every
# platform and any number of steps (the cuDNN layer is GPU-only; a scan unrolled k times needs a static length).
PORTABLE_SETTINGS = {"rnn_backend": "scan", "unroll": 1}

Weights = dict[str, jax.Array]
State = list[jax.Array]


def export(model: LanguageModel, params: Params, words: Sequence[str], *, platforms: Sequence[str] = ("cpu",),
           context: int = 1024, about: dict[str, Any] | None = None) -> bytes:
  """The zip file's bytes: `model` with `params` and its vocabulary `words`, lowered for `platforms`, its state
  holding `context` positions; `about` (the checkpoint's epoch, ...) goes into the manifest."""
  model = dataclasses.replace(model, **{name: value for name, value in PORTABLE_SETTINGS.items()
                                        if name in {f.name for f in dataclasses.fields(model)}})
  start = model.init_decoding_carry(1, context)
  if any(np.any(leaf) for leaf in jax.tree.leaves(start)):  # what the manifest tells a user to pass
    raise NotImplementedError(f"{model.kind}'s decoding state does not start at zeros; the manifest cannot say so")
  weight_names, state_names = _leaf_names(params), _leaf_names(start)
  weights = {name: np.asarray(leaf) for name, leaf in zip(weight_names, jax.tree.leaves(params))}
  score, step = _functions(model, jax.tree.structure(params), weight_names, jax.tree.structure(start))
  batch, steps = jax.export.symbolic_shape("batch, steps")
  # name -> (function, its token argument, that argument's shape)
  programs = {"score": (score, "tokens", (batch, steps)), "step": (step, "token", (batch,))}
  like_weights = {name: jax.ShapeDtypeStruct(w.shape, w.dtype) for name, w in weights.items()}
  like_state = [jax.ShapeDtypeStruct((batch, *leaf.shape[1:]), leaf.dtype) for leaf in jax.tree.leaves(start)]
  exported = {name: jax.export.export(jax.jit(fn), platforms=tuple(platforms))(
      like_weights, jax.ShapeDtypeStruct(token_shape, jnp.int32), like_state)
      for name, (fn, _, token_shape) in programs.items()}
  # A program's inputs, flat: the weights (sorted by name), the token ids, the state's arrays.
  state_avals = exported["score"].in_avals[len(weights) + 1:]
  manifest = {
      "format": FORMAT, "version": VERSION, "model": model.describe(), "config": model.config_fields(),
      **(about or {}), "jax_version": jax.__version__, "platforms": list(platforms), "vocab": list(words),
      "weights": WEIGHTS, "state": [{"name": name, **_shape(aval)} for name, aval in zip(state_names, state_avals)]}
  for name, (_, token, _) in programs.items():
    avals_in, avals_out = exported[name].in_avals, exported[name].out_avals
    manifest[name] = {"file": _file(name), "call": f"{name}.call(weights, {token}, state) -> (logits, state)",
                      token: _shape(avals_in[len(weights)]), "logits": _shape(avals_out[0])}
  weights_npz = io.BytesIO()
  np.savez(weights_npz, **weights)
  return _zip({MANIFEST: json.dumps(manifest, indent=1).encode(), WEIGHTS: weights_npz.getvalue(),
               **{_file(name): e.serialize() for name, e in exported.items()}})


def _functions(model: LanguageModel, params_tree: Any, weight_names: list[str],
               state_tree: Any) -> tuple[Callable, Callable]:
  """score and step over the weights by name and the flat state (batch-major, as a caller holds its texts)."""

  def score(weights: Weights, tokens_BxT: jax.Array, state: State) -> tuple[jax.Array, State]:
    params = jax.tree.unflatten(params_tree, [weights[name] for name in weight_names])
    output = model.features(params, tokens_BxT.T, jax.tree.unflatten(state_tree, state))
    return model.logits(params, output.features_TxBxH).transpose(1, 0, 2), jax.tree.leaves(output.carry)

  def step(weights: Weights, token_B: jax.Array, state: State) -> tuple[jax.Array, State]:
    logits_Bx1xV, state = score(weights, token_B[:, None], state)
    return logits_Bx1xV[:, 0], state

  return score, step


def _leaf_names(tree: Any) -> list[str]:
  """Each leaf's path in `tree`: 'layer_0_w_ih', 'keys/1', '0/1' (layer 0's second state array)."""
  key_name = lambda key: str(next(getattr(key, a) for a in ("key", "name", "idx") if hasattr(key, a)))
  return ["/".join(map(key_name, path)) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _shape(aval: Any) -> dict[str, Any]:
  """An array's shape (a symbolic dimension by its name) and dtype, as JSON."""
  return {"shape": [str(d) if jax.export.is_symbolic_dim(d) else int(d) for d in aval.shape], "dtype": str(aval.dtype)}


def _file(name: str) -> str:
  return f"{name}.stablehlo"


def _zip(files: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:  # stored, not deflated: weights hardly compress
    for name, content in files.items():
      archive.writestr(name, content)
  return buffer.getvalue()
