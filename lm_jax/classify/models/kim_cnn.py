"""Kim's CNN (config.model.kind = "cnn"; Kim 2014, yoonkim/CNN_sentence): one layer of convolution filters
over the word vectors, ReLU, max-over-time pooling, dropout, then the linear output layer.

  conv_i_weight [w_i, I, F]   filter bank i: F maps of width w_i (W_k = conv_i_weight[k] reads token t+k)
  conv_i_bias   [F]
plus the embedding(s) and the head (interface.py). I = emsize, or 2 * emsize for multichannel.

Defaults are Kim's: widths (3, 4, 5) x 100 maps, emsize 300, dropout 0.5 on the pooled 300-vector, max-norm 3
on the output layer, rand embeddings, filters ~ U(-0.01, 0.01), biases 0. The brief's IMDB ConvNet is the
same model with filter_widths=(2, 2, 3, 3, 4), filter_maps=1 (a 5-vector), dropout 0 and no max-norm.

Padding and pooling. Kim pads every sentence with w_max - 1 zero rows on the left and zeros up to a fixed
length on the right, and pools over every window of that padded matrix. Here each filter is a wide
convolution (conv.py: w - 1 zero rows on each side, T + w - 1 windows) and the max runs over the windows
holding at least one real token. For the widest filter these are exactly Kim's windows less those made of
padding alone, and the result of a sentence never depends on the length of the batch it sits in (Kim's
all-padding windows would add relu(b) to the max, a value that depends on nothing in the sentence).

relu(max_t c_t + b) is computed instead of max_t relu(c_t + b): the same value (both maps are monotone),
with the bias and the ReLU applied to [B, F] rather than to every window.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.classify.models.conv import wide_convs, window_mask
from lm_jax.classify.models.embedding_classifier import EmbeddingClassifier
from lm_jax.classify.models.interface import Params, uniform
from lm_jax.classify.models.pooling import masked_max
from lm_jax.errors import UserError

FILTER_INIT_RANGE = 0.01  # Kim's LeNetConvPoolLayer for ReLU filters


@dataclasses.dataclass(frozen=True)
class KimCNN(EmbeddingClassifier):
  """Kim's CNN; fields as config.model's."""

  kind = "cnn"

  dropout: float = 0.5
  max_norm: float = 3.0
  filter_widths: tuple[int, ...] = (3, 4, 5)
  filter_maps: int = 100          # feature maps per filter width

  def validate(self) -> None:
    super().validate()
    if not self.filter_widths or any(not isinstance(w, int) or w < 1 for w in self.filter_widths):
      raise UserError(f"config.model.filter_widths must list widths >= 1 (got {self.filter_widths}); pass e.g. "
                      "--config.model.filter_widths='(3, 4, 5)'")
    if self.filter_maps < 1:
      raise UserError(f"config.model.filter_maps must be >= 1 (got {self.filter_maps}); pass e.g. 100")

  def describe_features(self) -> str:
    return f"cnn {','.join(map(str, self.filter_widths))} x {self.filter_maps} maps"

  @property
  def features_size(self) -> int:
    return len(self.filter_widths) * self.filter_maps

  def init_features(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for i, width in enumerate(self.filter_widths):
      params[f"conv_{i}_weight"] = uniform(rng, (width, self.input_size, self.filter_maps), FILTER_INIT_RANGE)
      params[f"conv_{i}_bias"] = np.zeros(self.filter_maps, np.float32)
    return params

  def features(self, params: Params, x_BxTxI: jax.Array, mask_BxT: jax.Array) -> jax.Array:
    banks = range(len(self.filter_widths))
    windows = wide_convs(x_BxTxI, [params[f"conv_{i}_weight"] for i in banks])
    pooled = [masked_max(c_BxNxF, window_mask(mask_BxT, width)) + params[f"conv_{i}_bias"]
              for i, width, c_BxNxF in zip(banks, self.filter_widths, windows)]
    return jax.nn.relu(jnp.concatenate(pooled, axis=-1))
