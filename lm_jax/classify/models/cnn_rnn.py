"""The CNN -> RNN classifier (config.model.kind = "cnn_rnn"), the brief's third model (DESIGN.md): a
convolution over the sequence, max pooling over time, recurrent layers over the pooled features, and two
linear layers (the head's hidden layer and the output layer).

  conv_weight [conv_width, I, conv_maps]   torch Conv1d weight.permute(2, 1, 0)
  conv_bias   [conv_maps]
then the recurrent layers, readout and head of rnn.py (their fields and parameters), over the pooled steps.

The convolution is 'same': position t's window is centred on token t (for an even width, one more token on
the right, as torch's padding='same'), over zero vectors beyond the real tokens, then ReLU. Pooling takes the
max over each group of `pool_size` positions' real ones (pooling.max_pool); a group holding a real token is
real, so each row's recurrence stops at its last group with a real token. The brief leaves the sizes open;
the defaults here are 100 maps, GRU 50, hidden 50 (ReLU). With the 'flatten' readout, max_len counts tokens:
the recurrence runs ceil(max_len / pool_size) steps.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from lm_jax.classify.models.conv import wide_convs
from lm_jax.classify.models.interface import Params, uniform
from lm_jax.classify.models.kim_cnn import FILTER_INIT_RANGE
from lm_jax.classify.models.pooling import max_pool
from lm_jax.classify.models.rnn import RNNClassifier
from lm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class CNNRNNClassifier(RNNClassifier):
  """Convolution and pooling in front of rnn.py's classifier; fields as config.model's."""

  kind = "cnn_rnn"

  hidden: int = 50
  hidden_activation: str = "relu"
  bias: bool = True
  readout: str = "final"
  conv_width: int = 3
  conv_maps: int = 100
  pool_size: int = 2

  def validate(self) -> None:
    super().validate()
    for name in ("conv_width", "conv_maps", "pool_size"):
      if getattr(self, name) < 1:
        raise UserError(f"config.model.{name} must be >= 1 (got {getattr(self, name)}); pass e.g. "
                        f"--config.model.{name}=2")

  def describe_features(self) -> str:
    return (f"conv {self.conv_width} x {self.conv_maps} maps, max-pool {self.pool_size} -> "
            + super().describe_features())

  @property
  def recurrent_input_size(self) -> int:
    return self.conv_maps

  @property
  def recurrent_steps(self) -> int:
    return -(-self.max_len // self.pool_size)

  def init_features(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"conv_weight": uniform(rng, (self.conv_width, self.input_size, self.conv_maps), FILTER_INIT_RANGE),
            "conv_bias": np.zeros(self.conv_maps, np.float32),
            **super().init_features(rng)}

  def features(self, params: Params, x_BxTxI: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    (windows_BxNxF,) = wide_convs(x_BxTxI, [params["conv_weight"]])
    # Wide window t ends at token t; the 'same' window of token t ends `right` tokens after it.
    right = self.conv_width // 2
    steps = x_BxTxI.shape[1]
    c_BxTxF = jax.nn.relu(windows_BxNxF[:, right:right + steps] + params["conv_bias"])
    pooled_BxNxF, pooled_mask_BxN = max_pool(c_BxTxF, mask_BxT, self.pool_size)
    return super().features(params, pooled_BxNxF, pooled_mask_BxN)
