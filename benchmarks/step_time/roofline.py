"""The memory-bandwidth roofline of generating one sample (N = 1): every word reads the model's weights
from memory once, so no generator can beat bandwidth / bytes read per word.

Bytes per word, counted from the shapes (float32, 4 bytes: the parameters are stored in float32 in both
dtypes), width H = E = nhid:
- every model: the input word's embedding row (E) and the decoder (V x H weights, V biases; tied or not,
  the whole matrix is read);
- an rnn layer with G gates: W_ih and W_hh (2 x H x G*H) and their biases (2 x G*H);
- a transformer layer (feed-forward size F): the qkv projection (E x 3E + 3E), the output projection
  (E x E + E), the feed-forward (E x F + F, F x E + E), two layer norms (4E), and the key/value cache
  of the words before (2 x E per word, on average over a sample half its length); the final norm (2E).
"""

from __future__ import annotations

from lm_jax.models.cells import CELLS

from benchmarks.step_time.shapes import TRANSFORMER, Shape, mean_cached_words

FLOAT32_BYTES = 4
FORMULA = ("roofline words/s = memory bandwidth / bytes read per word at N = 1: 4 bytes x (embedding row E + per "
           "layer its weights and biases + decoder V·H + V; a transformer layer also reads its key/value cache, 2·E "
           "per earlier word, on average over a sample half its length)")


def _layer_floats(shape: Shape) -> float:
  width = shape.nhid
  if shape.model == TRANSFORMER:
    feedforward = shape.nhid
    weights = (3 * width * width + 3 * width) + (width * width + width) + (width * feedforward + feedforward) \
        + (feedforward * width + width) + 4 * width
    return weights + 2 * width * mean_cached_words(shape)
  gates = CELLS[shape.model].num_gates * width
  return 2 * width * gates + 2 * gates


def bytes_per_word(shape: Shape) -> float:
  """Bytes read from memory to generate one word of one sample."""
  final_norm = 2 * shape.nhid if shape.model == TRANSFORMER else 0
  embedding_row, decoder = shape.nhid, shape.vocab * shape.nhid + shape.vocab
  return FLOAT32_BYTES * (embedding_row + shape.nlayers * _layer_floats(shape) + final_norm + decoder)


def roofline_words_per_s(shape: Shape, bandwidth_gb_per_s: float) -> float:
  return bandwidth_gb_per_s * 1e9 / bytes_per_word(shape)
