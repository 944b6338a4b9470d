"""A reference state_dict <-> lm_jax parameters, by a converter's layout: {reference tensor name:
(parameter name, reference shape)}, in the reference's order, and which tensors PyTorch stores transposed
(its [out, in] for W x against lm_jax's [in, out] for x @ W). Works on numpy arrays of any dtype."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

Layout = dict[str, tuple[str, tuple[int, ...]]]


def params_from(state_dict: Mapping[str, np.ndarray], layout: Layout,
                transposed: Callable[[str], bool]) -> dict[str, np.ndarray]:
  """lm_jax parameters from a checked state_dict. A tied tensor appears under two reference names and maps to
  one parameter; the converter checked them equal, so either copy will do."""
  return {param: (np.asarray(state_dict[name]).T if transposed(name) else np.asarray(state_dict[name]))
          for name, (param, _) in layout.items()}


def state_dict_from(params: Mapping[str, Any], layout: Layout,
                    transposed: Callable[[str], bool]) -> dict[str, np.ndarray]:
  """The reference's state_dict, in its order, as C-ordered numpy arrays."""
  return {name: np.array(np.asarray(params[param]).T if transposed(name) else np.asarray(params[param]), order="C")
          for name, (param, _) in layout.items()}
