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
import ml_collections

from lm_jax.data.batching import Window
from lm_jax.errors import UserError
from lm_jax.models.interface import Carry, LanguageModel, ModelOutput, Params

# A regulariser: the model's output over the window and its valid-steps mask [T] -> a scalar added to the loss.
LossTerm = Callable[[ModelOutput, jax.Array], jax.Array]
REDUCTIONS = ("mean", "sum_over_time")


class LossAux(NamedTuple):
  nll_TxB: jax.Array     # token NLL at the scored positions, 0 elsewhere
  nll_sum: jax.Array     # summed token NLL over the scored positions
  tokens: jax.Array      # positions scored
  carry: Carry           # the state after the window
  output: ModelOutput    # features and activations, for evaluation-time methods and metrics


def activation_regulariser(alpha: float) -> LossTerm:
  """AWD-LSTM's AR: alpha * mean(h^2) over the last layer's dropped output (the decoder's input)."""

  def term(output: ModelOutput, valid_T: jax.Array) -> jax.Array:
    h_TxBxH = output.features_TxBxH
    squares = jnp.sum(jnp.square(h_TxBxH) * valid_T[:, None, None])
    return alpha * squares / (jnp.sum(valid_T) * h_TxBxH.shape[1] * h_TxBxH.shape[2])

  return term


def temporal_activation_regulariser(beta: float) -> LossTerm:
  """AWD-LSTM's TAR: beta * mean((h[t+1] - h[t])^2) over the last layer's raw output (aux 'top_raw_TxBxH'),
  over the window's valid pairs of steps (none in a one-step window: then 0, where torch's mean is NaN)."""

  def term(output: ModelOutput, valid_T: jax.Array) -> jax.Array:
    h_TxBxH = output.aux["top_raw_TxBxH"]
    pairs_T = valid_T[1:]  # valid steps form a prefix: t and t+1 are both valid iff t+1 is
    squares = jnp.sum(jnp.square(h_TxBxH[1:] - h_TxBxH[:-1]) * pairs_T[:, None, None])
    return beta * squares / jnp.maximum(1, jnp.sum(pairs_T) * h_TxBxH.shape[1] * h_TxBxH.shape[2])

  return term


class Regulariser(NamedTuple):
  build: Callable[[float], LossTerm]  # its weight (a top-level config field) -> the term
  reads: frozenset[str]               # the model aux outputs it needs (interface.LanguageModel.aux_outputs)
  what: str


# config field (the term's weight; 0 leaves the term out) -> the regulariser.
REGULARISERS = {
    "ar_alpha": Regulariser(activation_regulariser, frozenset(), "AWD-LSTM's activation regulariser"),
    "tar_beta": Regulariser(temporal_activation_regulariser, frozenset({"top_raw_TxBxH"}),
                            "AWD-LSTM's temporal activation regulariser"),
}


def regularisers(config: ml_collections.ConfigDict) -> tuple[LossTerm, ...]:
  """The loss terms the config asks for (config.ar_alpha, config.tar_beta)."""
  return tuple(reg.build(config[field]) for field, reg in REGULARISERS.items() if config[field])


def validate_regularisers(config: ml_collections.ConfigDict, provided: frozenset[str], family: str) -> None:
  """Raises UserError for a regulariser that reads an output the model family does not provide."""
  for field, reg in REGULARISERS.items():
    if config[field] < 0:
      raise UserError(f"config.{field} must be >= 0 (got {config[field]}); pass e.g. --config.{field}=2")
    missing = reg.reads - provided
    if config[field] and missing:
      raise UserError(f"config.{field} ({reg.what}) reads the model's {', '.join(sorted(missing))}, which the "
                      f"{family} family does not provide; pass --config.{field}=0, or a model kind that provides it")


def window_loss(model: LanguageModel, params: Params, carry: Carry, window: Window, *, train: bool,
                rng: jax.Array | None = None, reduction: str = "mean", terms: Sequence[LossTerm] = (),
                scored_B: jax.Array | None = None) -> tuple[jax.Array, LossAux]:
  """The loss over the window's valid steps and its aux.

  reduction 'mean': token NLL averaged over every scored token (the reference's); 'sum_over_time':
  summed over time, averaged over the batch (Zaremba et al.'s). `scored_B` marks the columns to score;
  dummy columns (evaluation padding) stay out of the sums.
  """
  # Truncated BPTT belongs to the window's loss: the carried state enters as a constant, so no gradient
  # reaches earlier windows, however the caller chains windows.
  output = model.features(params, window.inputs_TxB, jax.lax.stop_gradient(carry), window.valid_T, train=train,
                          rng=rng)
  nll_TxB = model.nll(params, output.features_TxBxH, window.targets_TxB)
  scored_TxB = window.valid_T[:, None] & (True if scored_B is None else scored_B)
  scored_TxB = jnp.broadcast_to(scored_TxB, nll_TxB.shape)
  nll_TxB = nll_TxB * scored_TxB
  nll_sum = jnp.sum(nll_TxB)
  tokens = jnp.sum(scored_TxB)
  batch = window.inputs_TxB.shape[1]
  loss = nll_sum / (batch if reduction == "sum_over_time" else tokens)
  if train:
    loss = loss + sum(term(output, window.valid_T) for term in terms)
  return loss, LossAux(nll_TxB, nll_sum, tokens, output.carry, output)
