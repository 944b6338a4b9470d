"""The reference's whole pickled model, read without its source and without running code from the file.

PyTorch's word_language_model saves `torch.save(model, f)`: a pickle of `model.RNNModel` (or
`model.TransformerModel`) and the torch.nn modules inside it. A plain unpickler imports every class the
file names and calls whatever the file asks it to, so it needs the reference's model.py on the path
and runs any code a crafted file holds. This module is a pickle module for `torch.load(...,
pickle_module=...)` that resolves only the names such a file holds: the reference's classes and the
torch.nn modules in them become `PickledModule`s (their attributes, no behaviour, nothing of torch.nn
constructed), tensors and parameters are rebuilt by torch's own functions (those its weights_only
loader allows too), and any other name is refused with `RefusedGlobal` before anything is called.
Only the standard library is imported here; torch only when a tensor is rebuilt.
"""

from __future__ import annotations

import collections
import functools
import importlib
import pickle
from typing import IO, Any

# The reference's model.py (module `model`), and the torch.nn modules its models are built from.
REFERENCE_CLASSES = frozenset({
    ("model", "RNNModel"), ("model", "TransformerModel"), ("model", "PositionalEncoding"),
    ("torch.nn.modules.sparse", "Embedding"), ("torch.nn.modules.dropout", "Dropout"),
    ("torch.nn.modules.rnn", "LSTM"), ("torch.nn.modules.rnn", "GRU"), ("torch.nn.modules.rnn", "RNN"),
    ("torch.nn.modules.linear", "Linear"), ("torch.nn.modules.linear", "NonDynamicallyQuantizableLinear"),
    ("torch.nn.modules.activation", "MultiheadAttention"), ("torch.nn.modules.normalization", "LayerNorm"),
    ("torch.nn.modules.container", "ModuleList"), ("torch.nn.modules.transformer", "TransformerEncoder"),
    ("torch.nn.modules.transformer", "TransformerEncoderLayer"),  # TransformerModel replaces nn.Transformer's decoder
})
# torch's functions that rebuild a tensor or a Parameter from a storage (persistent_load gives the storage).
TENSOR_REBUILDERS = frozenset({("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                               ("torch._utils", "_rebuild_parameter_with_state")})
# Containers a module's state holds. Protocol 2 names builtins `__builtin__`.
CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
              ("__builtin__", "set"): set}
# A transformer layer keeps its activation function as an attribute: it is kept as its name.
ACTIVATIONS = frozenset({("torch.nn.functional", "relu"), ("torch.nn.functional", "gelu")})


class RefusedGlobal(pickle.UnpicklingError):
  """The file names a class or function that no reference model holds; nothing of it was called."""

  def __init__(self, name: str):
    super().__init__(f"refused {name}")
    self.name = name


class PickledModule:
  """A reference nn.Module as its pickle describes it: `pickled_class` ("model.RNNModel") and the
  attributes torch pickles (`_parameters`, `_buffers`, `_modules`, and plain ones such as nhid)."""

  pickled_class = "?"

  def __init__(self) -> None:
    self.attributes: dict[str, Any] = {}

  def __setstate__(self, state: Any) -> None:
    if not isinstance(state, dict):
      raise pickle.UnpicklingError(f"{self.pickled_class} holds a {type(state).__name__}, not a module's attributes")
    self.attributes = state


@functools.cache
def _module_class(module: str, name: str) -> type[PickledModule]:
  """One subclass per pickled class, since pickle instantiates the class it resolves."""
  return type(name, (PickledModule,), {"pickled_class": f"{module}.{name}"})


class Unpickler(pickle.Unpickler):
  """pickle.Unpickler that resolves only the names a reference model's pickle holds."""

  def find_class(self, module: str, name: str) -> Any:
    key = (module, name)
    if key in REFERENCE_CLASSES:
      return _module_class(module, name)
    if key in TENSOR_REBUILDERS:
      return getattr(importlib.import_module(module), name)
    if key in CONTAINERS:
      return CONTAINERS[key]
    if key in ACTIVATIONS:
      return f"{module}.{name}"
    raise RefusedGlobal(f"{module}.{name}")


def load(file: IO[bytes], **kwargs: Any) -> Any:
  """pickle.load through `Unpickler` (torch's loader for the older, non-zip format calls it)."""
  return Unpickler(file, **kwargs).load()


def state_dict(module: PickledModule, prefix: str = "") -> dict[str, Any]:
  """What `model.state_dict()` gives for the pickled model: its parameters, then its persistent
  buffers, then each child's under `name.`, in order; a shared (tied) tensor under each of its names."""
  attributes = module.attributes
  entries = {prefix + name: p for name, p in attributes.get("_parameters", {}).items() if p is not None}
  non_persistent = attributes.get("_non_persistent_buffers_set", set())
  entries.update((prefix + name, b) for name, b in attributes.get("_buffers", {}).items()
                 if b is not None and name not in non_persistent)
  for name, child in attributes.get("_modules", {}).items():
    if isinstance(child, PickledModule):
      entries.update(state_dict(child, f"{prefix}{name}."))
  return entries
