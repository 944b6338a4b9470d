"""IRNN (config.model.recurrent_init=identity): W_hh = scale * I and zero biases at init, every other
parameter as the default init draws it from the same seed; the default init unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from lm_jax.config import validate
from lm_jax.errors import UserError
from lm_jax.models.rnn_model import RNNModel
from tests.conftest import tiny_config



@pytest.mark.parametrize("cell", ["rnn_relu", "rnn_tanh"])
def test_identity_init_sets_w_hh_and_biases_and_nothing_else(cell):
  common = dict(vocab_size=50, cell=cell, emsize=6, nhid=5, nlayers=2)
  default = RNNModel(**common).init_params(7)
  irnn = RNNModel(**common, recurrent_init="identity", recurrent_init_scale=0.5).init_params(7)
  assert default.keys() == irnn.keys()
  for name, value in irnn.items():
    value = np.asarray(value)
    if name.endswith("_w_hh"):
      np.testing.assert_array_equal(value, 0.5 * np.eye(5, dtype=np.float32))
    elif name.endswith(("_b_ih", "_b_hh")):
      np.testing.assert_array_equal(value, np.zeros(5, np.float32))
    else:  # embedding, w_ih, decoder: the same draws as the default init
      np.testing.assert_array_equal(value, np.asarray(default[name]))


def test_default_init_is_torch_uniform():
  params = RNNModel(vocab_size=50, cell="rnn_relu", emsize=6, nhid=400, nlayers=1).init_params(0)
  bound = 1.0 / 400 ** 0.5
  for name in ("layer_0_w_hh", "layer_0_b_ih", "layer_0_b_hh"):
    value = np.asarray(params[name])
    # U(-1/sqrt(H), 1/sqrt(H)): inside the bound and spread over it (not an identity, not zeros)
    assert np.abs(value).max() <= bound and np.abs(value).max() > 0.9 * bound and value.std() > 0.5 * bound / 3 ** 0.5


@pytest.mark.parametrize("overrides, message", [
    ({"model.recurrent_init": "identity"}, r"recurrent_init=identity \(IRNN\) is for rnn_relu and rnn_tanh, not 'lstm'"),
    ({"model.recurrent_init": "identity", "model.cell": "gru"}, r"rnn_tanh, not 'gru'; pass --config.model.cell"),
    ({"model.recurrent_init": "orthogonal"}, r"unknown config.model.recurrent_init 'orthogonal'; use one of uniform, identity"),
    ({"model.cell": "rnn_relu", "model.recurrent_init": "identity", "model.recurrent_init_scale": 0.0},
     r"recurrent_init_scale must be > 0 \(got 0.0\)"),
])
def test_bad_recurrent_init_is_one_line(overrides, message):
  with pytest.raises(UserError, match=message):
    validate(tiny_config(**overrides))
