"""lm_jax's side of the speed comparison: Kim's CNN from classify_config('cnn') at the shape, the classification
task's own compiled train step (`steps.make_train_step`: Adadelta, max-norm, the epoch's sums) and prediction
(`steps.probabilities`, what lm-jax-classify-evaluate and -predict call). Writes the weights it starts from for the
PyTorch worker."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax import optim
from lm_jax.classify import steps
from lm_jax.classify.config import classify_config
from lm_jax.classify.data.batching import Batch
from lm_jax.classify.models.interface import uniform
from lm_jax.classify.models.registry import model_from_config
from lm_jax.steps import TrainState

from benchmarks.classification.speed import Shape, Workload, prediction_batch, training_batches

OUTPUT_INIT_RANGE = 1.0  # zero in Kim's recipe; drawn here so that the predictions vary (logits of order 0.3)


def as_batch(tokens_BxT: np.ndarray, mask_BxT: np.ndarray, labels_B: np.ndarray) -> Batch:
  batch_size = len(labels_B)
  return Batch(tokens_BxT, mask_BxT, labels_B, np.ones(batch_size, np.float32), np.arange(batch_size, dtype=np.int32))


def build(shape: Shape, weights_path: str) -> Workload:
  config = classify_config("cnn")
  config.model.update(emsize=shape.emsize, filter_widths=shape.filter_widths, filter_maps=shape.filter_maps)
  model = model_from_config(config.model, shape.vocab, shape.classes)
  params = model.init_params(config.seed)
  params["output_weight"] = jnp.asarray(uniform(np.random.default_rng(config.seed), params["output_weight"].shape,
                                                OUTPUT_INIT_RANGE))
  if not os.path.exists(weights_path):
    np.savez(weights_path, **{name: np.asarray(value) for name, value in params.items()})
  optimizer = optim.make_optimizer(config.optim, frozen=model.frozen_params())
  train_step = steps.make_train_step(model, optimizer)
  state = [TrainState(params, optimizer.init(params), steps.epoch_sums(), jax.random.PRNGKey(config.seed + 1),
                      jnp.int32(0))]
  batches = [as_batch(*arrays) for arrays in training_batches(shape)]
  predicted = as_batch(*prediction_batch(shape))

  def train(i: int) -> None:
    state[0], _ = jax.block_until_ready(train_step(state[0], batches[i]))

  def predict() -> np.ndarray:
    return steps.probabilities(model, state[0].params, [predicted], shape.predict_batch)

  return Workload(train, predict, str(jax.devices()[0].device_kind))
