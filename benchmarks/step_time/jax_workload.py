"""The lm_jax workload: the trainer's own model (the `rnn` family with the shape's cell, or `transformer`),
optimiser, train step, Evaluator and generator at a given `Shape`, behind the `Workload` interface; and the
step breakdown of the report, lm_jax/profile.py's (the mechanism behind lm-jax-profile) at the shape."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import ml_collections
import optax

from lm_jax import steps
from lm_jax.config import reference_config
from lm_jax.data.batching import DeviceSplit, put_on_device, window_at, window_bounds
from lm_jax.evaluate import Evaluator
from lm_jax.generate import generate
from lm_jax.models.interface import LanguageModel
from lm_jax.models.registry import model_from_config
from lm_jax.optim import make_optimizer
from lm_jax.profile import profile_step

from benchmarks.step_time.measure import Workload
from benchmarks.step_time.shapes import TRANSFORMER, Shape, random_stream

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclasses.dataclass(frozen=True)
class Setup:
  model: LanguageModel
  optimizer: optax.GradientTransformation
  state: steps.TrainState
  train: DeviceSplit
  evaluation: DeviceSplit


def model_config(shape: Shape) -> ml_collections.ConfigDict:
  """config.model of the shape: the reference's defaults with its family, sizes, dropout and matmul dtype."""
  model = reference_config().model
  model.update(emsize=shape.nhid, nhid=shape.nhid, nlayers=shape.nlayers, dropout=shape.dropout, tied=shape.tied,
               matmul_dtype=shape.dtype)
  if shape.model == TRANSFORMER:
    model.update(kind=TRANSFORMER, nhead=shape.nhead)
  else:
    model.update(cell=shape.model)
  return model


def setup(shape: Shape) -> Setup:
  """The reference config with the shape's model, batch and window; data on the device once."""
  config = reference_config()
  config.model = model_config(shape)
  config.update(batch_size=shape.batch, eval_batch_size=shape.eval_batch, bptt=shape.bptt)
  config.optim.update(lr=shape.lr, clip=shape.clip)
  model = model_from_config(config.model, shape.vocab)
  optimizer = make_optimizer(config.optim)
  train = put_on_device(random_stream(shape, shape.batch, shape.train_windows, seed=0), shape.batch, shape.bptt)
  evaluation = put_on_device(random_stream(shape, shape.eval_batch, shape.eval_windows, seed=1),
                             shape.eval_batch, shape.bptt)
  return Setup(model, optimizer, steps.TrainState.create(model, optimizer, config.seed, shape.batch), train,
               evaluation)


def compilation_counter(jitted: Callable) -> Callable[[], int]:
  """Compiled programs of `jitted`: its cache size where jax exposes one, else every backend
  compilation in the process from now on."""
  if hasattr(jitted, "_cache_size"):
    return jitted._cache_size
  compiled = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **_: compiled.append(event) if event == BACKEND_COMPILE_EVENT else None)
  return lambda: len(compiled)


def device_peak_mib() -> float | None:
  stats = jax.local_devices()[0].memory_stats()  # None on CPU
  return stats["peak_bytes_in_use"] / 2 ** 20 if stats and "peak_bytes_in_use" in stats else None


def build(shape: Shape) -> Workload:
  s = setup(shape)
  train_step = steps.make_train_step(s.model, s.optimizer, shape.bptt)
  evaluator = Evaluator(s.model, shape.bptt)
  windows = window_bounds(s.train.rows, shape.bptt)
  state, step = s.state, 0
  inputs_TxB = window_at(s.train.padded_TxB, 0, shape.bptt, shape.bptt).inputs_TxB
  # An rnn model's features are its embedding and recurrent layers (the decoder comes after), from a zero state.
  features = jax.jit(lambda params, tokens_TxB: s.model.features(params, tokens_TxB,
                                                                 s.model.init_carry(shape.batch)).features_TxBxH)

  def train() -> None:
    nonlocal state, step
    state, metrics = train_step(state, steps.WindowAt(*windows[step % len(windows)]), s.train.padded_TxB)
    jax.block_until_ready((state, metrics))
    step += 1

  return Workload(
      train_step=train,
      evaluate=lambda: evaluator.mean_nll(state.params, s.evaluation),  # a host float: it waits for the device
      generate={n: lambda n=n: jax.block_until_ready(generate(s.model, state.params, jax.random.PRNGKey(0),
                                                               shape.gen_words, 1.0, num_samples=n))
                for n in shape.gen_samples},
      recurrence_forward=(None if shape.model == TRANSFORMER
                          else lambda: jax.block_until_ready(features(state.params, inputs_TxB))),
      compilations=compilation_counter(train_step),
      device_peak_mib=device_peak_mib,
      device=str(jax.devices()[0].device_kind),
  )


def step_breakdown(shape: Shape) -> dict:
  """The profile's JSON: step_ms, parts_ms (summing to step_ms with 'rest'), percent, per_time_step_ms."""
  s = setup(shape)
  train_step = steps.make_train_step(s.model, s.optimizer, shape.bptt)
  return profile_step(s.model, s.optimizer, s.state, train_step, s.train, shape.bptt, shape.steps).to_json()
