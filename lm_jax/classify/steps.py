"""The classifier's compiled steps: one train step over a padded batch (weighted cross-entropy, the optimiser, the
family's constraints), and the class probabilities of a batch. Both compile once per bucket length
(lm_jax/classify/data/batching.py)."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm_jax import fast_random, optim
from lm_jax.classify.data.batching import Batch
from lm_jax.classify.models.interface import Classifier, Params
from lm_jax.steps import TrainState

Metrics = dict[str, jax.Array]


def _on_device(batch: Batch) -> tuple[jax.Array, ...]:
  # index_B stays on the host: it only orders predictions.
  return batch.tokens_BxT, batch.mask_BxT, batch.labels_B, batch.weight_B


def epoch_sums() -> dict[str, jax.Array]:
  """The carry at an epoch's start: the epoch's summed NLL, right predictions and examples so far."""
  return {name: jnp.zeros((), jnp.float32) for name in ("nll", "correct", "count")}


def make_train_step(model: Classifier, optimizer: optax.GradientTransformation
                    ) -> Callable[[TrainState, Batch, float], tuple[TrainState, Metrics]]:
  """(state, batch, lr_scale) -> (state, metrics): `loss`, the batch's mean NLL over its real rows; `correct` and
  `count`, its right predictions and real rows; `grad_norm`. The state's carry sums them over the epoch so far
  (`epoch_sums`; zeros at each epoch's start), so a resumed epoch reports what the uninterrupted one does. The lr of
  this step is the epoch's times `lr_scale` (STLR's factor; 1 by default)."""

  @fast_random.traced_with_fast_random
  def step(state: TrainState, tokens_BxT, mask_BxT, labels_B, weight_B, lr_scale) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(params: Params):
      logits_BxC = model.logits(params, tokens_BxT, mask_BxT, train=True, rng=rng)
      nll_B = -jnp.take_along_axis(jax.nn.log_softmax(logits_BxC), labels_B[:, None], axis=1)[:, 0]
      return jnp.sum(nll_B * weight_B) / jnp.sum(weight_B), logits_BxC

    (loss, logits_BxC), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = optim.update_with_lr_scale(optimizer, grads, state.opt_state, state.params, lr_scale)
    params = model.constraints(optax.apply_updates(state.params, updates))
    correct = jnp.sum((jnp.argmax(logits_BxC, axis=1) == labels_B) * weight_B)
    count = jnp.sum(weight_B)
    metrics = {"loss": loss, "correct": correct, "count": count, "grad_norm": optim.global_norm(grads)}
    sums = {"nll": state.carry["nll"] + loss * count, "correct": state.carry["correct"] + correct,
            "count": state.carry["count"] + count}
    return TrainState(params, opt_state, sums, state.rng, state.step + 1), metrics

  compiled = jax.jit(step, donate_argnums=0)
  return lambda state, batch, lr_scale=1.0: compiled(state, *_on_device(batch), np.float32(lr_scale))


@functools.partial(jax.jit, static_argnums=0)
def _probabilities(model: Classifier, params: Params, tokens_BxT, mask_BxT) -> jax.Array:
  return jax.nn.softmax(model.logits(params, tokens_BxT, mask_BxT, train=False), axis=1)


def probabilities(model: Classifier, params: Params, batches: list[Batch], num_examples: int) -> np.ndarray:
  """[N, C] class probabilities of the split the `batches` (evaluation order, from bucketed_batches) cover."""
  probs_NxC = np.zeros((num_examples, model.num_classes), np.float64)
  for batch in batches:
    real_B = batch.index_B >= 0
    probs_BxC = np.asarray(_probabilities(model, params, batch.tokens_BxT, batch.mask_BxT), np.float64)
    probs_NxC[batch.index_B[real_B]] = probs_BxC[real_B]
  return probs_NxC
