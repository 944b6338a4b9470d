"""The config.optim group -> optax, and the host-side learning-rate schedules.

An optimiser is one entry of OPTIMIZERS (name -> builder of the update that follows the clip), a
schedule one entry of SCHEDULES (name -> the lr of the next epoch). Every optimiser runs as
clip_by_global_norm(clip), then its update, with the lr injected into the optimiser state so that the
host can change it between epochs without recompiling.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lm_jax.errors import UserError


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """torch.nn.utils.clip_grad_norm_'s rule: scale by min(1, max_norm / (norm + 1e-6)). optax's own
  has no 1e-6, which changes every clipped step slightly; at lr 20 that compounds past 1e-4 in 20 steps."""

  def update(updates, state, params=None):
    scale = jnp.minimum(1.0, max_norm / (global_norm(updates) + 1e-6))
    return jax.tree.map(lambda g: g * scale, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _sgd(c: ml_collections.ConfigDict, lr: float) -> optax.GradientTransformation:
  # torch.optim.SGD's weight decay: wd * param added to the (already clipped) gradient, then scaled by lr.
  return optax.chain(optax.add_decayed_weights(c.weight_decay), optax.sgd(lr)) if c.weight_decay else optax.sgd(lr)


def _adamw(c: ml_collections.ConfigDict, lr: float) -> optax.GradientTransformation:
  return optax.adamw(lr, weight_decay=c.weight_decay)


OPTIMIZERS: dict[str, Callable[[ml_collections.ConfigDict, float], optax.GradientTransformation]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


def _plateau(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """The reference's: divide by lr_decay when validation loss did not improve."""
  return lr if improved else lr / c.lr_decay


def _decay_after(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """Zaremba et al.'s: lr0 / lr_decay ** max(0, epoch + 1 - lr_decay_start)."""
  return c.lr / c.lr_decay ** max(0, epoch + 1 - c.lr_decay_start)


# name -> (optim config, lr of the epoch that ended, its 1-based number, whether validation improved) -> next lr
SCHEDULES: dict[str, Callable[[ml_collections.ConfigDict, float, int, bool], float]] = {
    "plateau": _plateau,
    "decay_after": _decay_after,
}


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the bad config.optim field and the fix."""
  if c.name not in OPTIMIZERS:
    raise UserError(f"unknown optimizer {c.name!r}; pass --config.optim.name= one of {', '.join(OPTIMIZERS)}")
  if c.schedule not in SCHEDULES:
    raise UserError(f"unknown lr schedule {c.schedule!r}; pass --config.optim.schedule= one of {', '.join(SCHEDULES)}")
  if c.lr <= 0:
    raise UserError(f"config.optim.lr must be > 0 (got {c.lr}); pass e.g. --config.optim.lr=20")
  if c.clip <= 0:
    raise UserError(f"config.optim.clip must be > 0 (got {c.clip}); pass e.g. --config.optim.clip=0.25")
  if c.weight_decay < 0:
    raise UserError(f"config.optim.weight_decay must be >= 0 (got {c.weight_decay}); pass e.g. 1.2e-6")
  if c.lr_decay < 1.0:
    raise UserError(f"config.optim.lr_decay must be >= 1 (got {c.lr_decay}); it divides the lr, e.g. 4")


def make_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """clip_by_global_norm(clip) then the named optimiser, with the lr injected so the host can change it."""

  def build(learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(clip_by_global_norm(c.clip), OPTIMIZERS[c.name](c, learning_rate))

  return optax.inject_hyperparams(build)(learning_rate=c.lr)


def with_learning_rate(opt_state: optax.InjectHyperparamsState, lr: float) -> optax.InjectHyperparamsState:
  """The same optimiser state with a new learning rate (the hyperparameter lives in the state)."""
  hyperparams = dict(opt_state.hyperparams, learning_rate=lr)
  return opt_state._replace(hyperparams=hyperparams)


def initial_learning_rate(c: ml_collections.ConfigDict) -> float:
  """The lr of epoch 1, by the schedule too: decay_after with lr_decay_start 0 decays it already."""
  return SCHEDULES[c.schedule](c, c.lr, 0, True)  # as if an epoch 0 had ended, improving


def next_learning_rate(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """The lr for epoch `epoch + 1` after epoch `epoch` (1-based) ended, by config.optim.schedule."""
  return SCHEDULES[c.schedule](c, lr, epoch, improved)


def perplexity(mean_nll: float) -> float:
  return math.exp(mean_nll) if mean_nll < 700.0 else math.inf  # exp overflows past ~709
