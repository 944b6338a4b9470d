"""The optimiser (clip the global norm, then SGD or AdamW) and the host-side learning-rate rules."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """torch.nn.utils.clip_grad_norm_'s rule: scale by min(1, max_norm / (norm + 1e-6)). optax's own
  has no 1e-6, which changes every clipped step slightly; at lr 20 that compounds past 1e-4 in 20 steps."""

  def update(updates, state, params=None):
    scale = jnp.minimum(1.0, max_norm / (global_norm(updates) + 1e-6))
    return jax.tree.map(lambda g: g * scale, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(c: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """clip_by_global_norm(clip) then sgd/adamw, with the lr injected so the host can change it."""

  def build(learning_rate: float) -> optax.GradientTransformation:
    step = (optax.sgd(learning_rate) if c.optimizer == "sgd"
            else optax.adamw(learning_rate, weight_decay=c.weight_decay))
    return optax.chain(clip_by_global_norm(c.clip), step)

  return optax.inject_hyperparams(build)(learning_rate=c.lr)


def with_learning_rate(opt_state: optax.InjectHyperparamsState, lr: float) -> optax.InjectHyperparamsState:
  """The same optimiser state with a new learning rate (the hyperparameter lives in the state)."""
  hyperparams = dict(opt_state.hyperparams, learning_rate=lr)
  return opt_state._replace(hyperparams=hyperparams)


def next_learning_rate(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """The lr for epoch `epoch + 1` after epoch `epoch` (1-based) ended.

  plateau (the reference): divide by lr_decay when validation loss did not improve.
  decay_after (Zaremba et al.): lr0 / lr_decay ** max(0, epoch + 1 - lr_decay_start).
  """
  if c.lr_rule == "plateau":
    return lr if improved else lr / c.lr_decay
  return c.lr / c.lr_decay ** max(0, epoch + 1 - c.lr_decay_start)


def perplexity(mean_nll: float) -> float:
  return math.exp(mean_nll) if mean_nll < 700.0 else math.inf  # exp overflows past ~709
