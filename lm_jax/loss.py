"""The training and evaluation loss of one window, with an aux channel.

`window_loss` runs the model family's features and NLL over one window and composes the token NLL with
optional regulariser terms; each term is a function of the model's output (features and aux
activations) and is added only in training. Train and evaluation differ by the named `train` argument:
dropout on (drawn from `rng`) and the terms added, or neither.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lm_jax.data.batching import Window
from lm_jax.models.interface import Carry, LanguageModel, ModelOutput, Params

# A regulariser: the model's output over the window and its valid-steps mask [T] -> a scalar added to the loss.
LossTerm = Callable[[ModelOutput, jax.Array], jax.Array]
REDUCTIONS = ("mean", "sum_over_time")


class LossAux(NamedTuple):
  nll_sum: jax.Array     # summed token NLL over the scored positions
  tokens: jax.Array      # positions scored
  carry: Carry           # the state after the window
  output: ModelOutput    # features and activations, for evaluation-time methods and metrics


def window_loss(model: LanguageModel, params: Params, carry: Carry, window: Window, *, train: bool,
                rng: jax.Array | None = None, reduction: str = "mean", terms: Sequence[LossTerm] = (),
                scored_B: jax.Array | None = None) -> tuple[jax.Array, LossAux]:
  """The loss over the window's valid steps and its aux.

  reduction 'mean': token NLL averaged over every scored token (the reference's); 'sum_over_time':
  summed over time, averaged over the batch (Zaremba et al.'s). `scored_B` marks the columns to score;
  dummy columns (evaluation padding) stay out of the sums.
  """
  output = model.features(params, window.inputs_TxB, carry, window.valid_T, train=train, rng=rng)
  nll_TxB = model.nll(params, output.features_TxBxH, window.targets_TxB)
  scored_TxB = window.valid_T[:, None] & (True if scored_B is None else scored_B)
  scored_TxB = jnp.broadcast_to(scored_TxB, nll_TxB.shape)
  nll_sum = jnp.sum(nll_TxB * scored_TxB)
  tokens = jnp.sum(scored_TxB)
  batch = window.inputs_TxB.shape[1]
  loss = nll_sum / (batch if reduction == "sum_over_time" else tokens)
  if train:
    loss = loss + sum(term(output, window.valid_T) for term in terms)
  return loss, LossAux(nll_sum, tokens, output.carry, output)
