"""Matmul FLOPs of one training step, counted from the shapes.

Per layer k with input size I (the embedding size for k = 0, else H) and G gates (LSTM 4, GRU 3,
Elman 1), over T time steps and batch B:
  input projection 2*T*B*I*G*H,  recurrent 2*T*B*H*G*H;
decoder 2*T*B*H*V. The embedding gather, the element-wise gate maths, the softmax and the optimiser
are left out (no matmuls). The backward pass does two matmuls per forward matmul (gradient with
respect to the input and to the weight), so a train step is 3x the forward FLOPs.
"""

from __future__ import annotations

from lm_jax.models.cells import CELLS

from benchmarks.shapes import Shape

FORMULA = ("3 x [sum over layers (2·T·B·I·G·H + 2·T·B·H·G·H) + 2·T·B·H·V], I = input size, G = gates "
           "(LSTM 4, GRU 3, RNN 1); backward = 2x forward; embedding gather, gate maths, softmax, optimiser left out")


def forward_flops(shape: Shape) -> int:
  tokens = shape.batch * shape.bptt
  gates = CELLS[shape.cell].num_gates * shape.nhid
  inputs = shape.nhid  # the embedding size equals nhid in every benchmarked shape, so I = H for each layer
  per_layer = 2 * tokens * inputs * gates + 2 * tokens * shape.nhid * gates
  return shape.nlayers * per_layer + 2 * tokens * shape.nhid * shape.vocab


def train_step_flops(shape: Shape) -> int:
  return 3 * forward_flops(shape)
