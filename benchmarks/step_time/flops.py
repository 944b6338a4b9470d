"""Matmul FLOPs of one training step, counted from the shapes.

Over T time steps and batch B, per layer k:
- an rnn cell with input size I (the embedding size for k = 0, else H) and G gates (LSTM 4, GRU 3,
  Elman 1): input projection 2*T*B*I*G*H, recurrent 2*T*B*H*G*H;
- a transformer encoder layer of width E and feed-forward size F: the query/key/value projection
  2*T*B*E*3E, the attention output projection 2*T*B*E*E, the feed-forward 2*T*B*E*F twice, and per
  sequence the scores q k^T and the weighted values 2*T*T*E each (all heads together; the reference
  computes every T x T score and masks the future, so the causal half is counted too);
then the decoder 2*T*B*H*V. The embedding gather, the element-wise maths (gates, softmax, layer norms),
the softmax cross-entropy and the optimiser are left out (no matmuls). The backward pass does two
matmuls per forward matmul (gradient with respect to the input and to the weight), so a train step is
3x the forward FLOPs. Generating a word (`generated_word_flops`) is the forward of one row.
"""

from __future__ import annotations

from lm_jax.models.cells import CELLS

from benchmarks.step_time.shapes import TRANSFORMER, Shape, mean_cached_words

FORMULA = ("3 x [sum over layers L + 2·T·B·H·V]; rnn layer L = 2·T·B·I·G·H + 2·T·B·H·G·H (I = input size, G = "
           "gates: LSTM 4, GRU 3, RNN 1); transformer layer L = 2·T·B·(3E² + E² + 2·E·F) + 2·(2·B·T²·E) (qkv and "
           "output projections, feed-forward, scores and weighted values over all T² positions); backward = 2x "
           "forward; embedding gather, element-wise maths, softmax, optimiser left out")


def _layer_flops(shape: Shape, tokens: int, context: float) -> float:
  """One layer's matmul FLOPs for `tokens` rows, a transformer's queries each attending to `context` positions."""
  width = shape.nhid  # the embedding size equals nhid in every shape: I = H = E
  if shape.model == TRANSFORMER:
    feedforward = shape.nhid
    projections = 2 * tokens * (3 * width * width + width * width + 2 * width * feedforward)
    return projections + 2 * (2 * tokens * context * width)
  gates = CELLS[shape.model].num_gates * width
  return 2 * tokens * width * gates + 2 * tokens * width * gates


def forward_flops(shape: Shape) -> float:
  tokens = shape.batch * shape.bptt
  return shape.nlayers * _layer_flops(shape, tokens, shape.bptt) + 2 * tokens * shape.nhid * shape.vocab


def generated_word_flops(shape: Shape) -> float:
  """One generated word of one sample: one row through the layers (a transformer's query over its key/value
  cache, as many words as it holds on average over a sample) and the decoder."""
  return shape.nlayers * _layer_flops(shape, 1, mean_cached_words(shape)) + 2 * shape.nhid * shape.vocab


def train_step_flops(shape: Shape) -> float:
  return 3 * forward_flops(shape)
