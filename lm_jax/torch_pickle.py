"""The references' whole pickled models, read without their source and without running code from the file.

PyTorch's word_language_model saves `torch.save(model, f)`: a pickle of `model.RNNModel` (or
`model.TransformerModel`) and the torch.nn modules inside it. salesforce/awd-lstm-lm's main.py saves
`torch.save([model, criterion, optimizer], f)` (its `model.RNNModel` with `locked_dropout`, `weight_drop` and
torch.nn modules, a `splitcross.SplitCrossEntropyLoss`, a torch.optim SGD or ASGD), its finetune.py the model
alone. A plain unpickler imports every class the file names and calls whatever the file asks it to, so it
needs the reference's source on the path and runs any code a crafted file holds. This module is a pickle
module for `torch.load(..., pickle_module=...)` that resolves only the names such files hold: the references'
classes, the torch.nn modules and the optimizers in them become `PickledModule`s (their attributes, no
behaviour, nothing of torch constructed), tensors and parameters are rebuilt by torch's own functions (those
its weights_only loader allows too), and any other name is refused with `RefusedGlobal` before anything is
called. Only the standard library is imported here; torch only when a tensor is rebuilt.
"""

from __future__ import annotations

import collections
import functools
import importlib
import pickle
from typing import IO, Any

# The references' classes (model.py is module `model` in both), the torch.nn modules their models are built
# from, and the optimizers awd-lstm-lm's main.py pickles beside its model.
REFERENCE_CLASSES = frozenset({
    ("model", "RNNModel"), ("model", "TransformerModel"), ("model", "PositionalEncoding"),
    ("locked_dropout", "LockedDropout"), ("weight_drop", "WeightDrop"), ("splitcross", "SplitCrossEntropyLoss"),
    ("torch.optim.sgd", "SGD"), ("torch.optim.asgd", "ASGD"), ("torch.optim.adam", "Adam"),
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
# Containers a module's state holds. Protocol 2 names builtins `__builtin__`. A defaultdict (an optimizer's
# `state`, SplitCrossEntropyLoss's `stats`) is read as a plain dict: its factory is never called.
CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
              ("__builtin__", "set"): set, ("collections", "defaultdict"): lambda *factory: {}}
# A defaultdict's factory: kept as its name, so that nothing can call it.
FACTORIES = frozenset({("builtins", "list"), ("__builtin__", "list"), ("builtins", "dict"), ("__builtin__", "dict")})
# WeightDrop stores a bound method of its own on the LSTM it wraps (`flatten_parameters`), which pickle writes
# as getattr(weight_drop, name): resolved to `_method_name`, which looks nothing up.
GETATTR = frozenset({("builtins", "getattr"), ("__builtin__", "getattr")})
# A transformer layer keeps its activation function as an attribute: it is kept as its name.
ACTIVATIONS = frozenset({("torch.nn.functional", "relu"), ("torch.nn.functional", "gelu")})


class RefusedGlobal(pickle.UnpicklingError):
  """The file names a class or function that no reference model holds; nothing of it was called."""

  def __init__(self, name: str):
    super().__init__(f"refused {name}")
    self.name = name


class PickledModule:
  """A reference nn.Module (or optimizer) as its pickle describes it: `pickled_class` ("model.RNNModel") and
  the attributes torch pickles (`_parameters`, `_buffers`, `_modules`, and plain ones such as nhid; an
  optimizer's `state` and `param_groups`)."""

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
    if key in ACTIVATIONS or key in FACTORIES:
      return f"{module}.{name}"
    if key in GETATTR:
      return _method_name
    raise RefusedGlobal(f"{module}.{name}")


def _method_name(owner: Any, name: Any) -> str:
  """A pickled bound method of a reference module, as "weight_drop.WeightDrop.<name>"; nothing is looked up."""
  if not isinstance(owner, PickledModule) or not isinstance(name, str):
    raise pickle.UnpicklingError(f"the file asks for an attribute of a {type(owner).__name__}, which no reference "
                                 "model's pickle does")
  return f"{owner.pickled_class}.{name}"


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
