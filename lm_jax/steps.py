"""The train step: one pure, jit-compiled function of the whole train state and one window.

    state, metrics = train_step(state, window_at, data_TxB)

It is a per-device program under jax.shard_map over the 'data' mesh (parallel.py): each device runs the
model on its own columns of the split and its own slice of the carried state; gradients and the loss are
averaged across devices with lax.pmean. The window is sliced by index from the split already on the
devices, so one compiled program serves every window of every epoch; with `length_bucket` (variable BPTT),
one program per window length rounded up to a multiple of it, so that a window runs few masked steps.
The state is donated whole.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lm_jax import fast_random, optim, parallel
from lm_jax.data.batching import window_at as cut_window
from lm_jax.loss import LossTerm, window_loss
from lm_jax.models.interface import Carry, LanguageModel, Params
from lm_jax.parallel import CARRY, COLUMNS, DATA, REPLICATED

Metrics = dict[str, jax.Array]


class TrainState(NamedTuple):
  """Everything a step reads and writes, on the devices."""

  params: Params
  opt_state: optax.OptState
  carry: Carry       # columns split over the devices, beside their data
  rng: jax.Array     # the dropout key: each step folds in its number, each device its index
  step: jax.Array    # steps taken, an int32 scalar

  @classmethod
  def create(cls, model: LanguageModel, optimizer: optax.GradientTransformation, seed: int, batch_size: int,
             params: Params | None = None) -> TrainState:
    """The state at step 0 from `seed`: `params` (default: the model's init from the seed), their fresh
    optimiser state, a zero carry and the dropout key."""
    params = model.init_params(seed) if params is None else params
    return cls(params, optimizer.init(params), model.init_carry(batch_size), jax.random.PRNGKey(seed + 1),
               jnp.zeros((), jnp.int32))


class WindowAt(NamedTuple):
  start: Any            # first row of the window in the batchified split
  length: Any           # its valid steps, <= the static max_len
  lr_scale: Any = 1.0   # the lr is scaled by this for this step only (variable BPTT: drawn length / bptt; STLR)


STATE_SPECS = TrainState(params=REPLICATED, opt_state=REPLICATED, carry=CARRY, rng=REPLICATED, step=REPLICATED)


def static_steps(length: int, max_len: int, length_bucket: int) -> int:
  """The static length a window of `length` valid steps runs at: `max_len`, or with `length_bucket` its length
  rounded up to a multiple of the bucket, at most `max_len`."""
  if not length_bucket:
    return max_len
  return min(max_len, -(-int(length) // length_bucket) * length_bucket)


def make_train_step(model: LanguageModel, optimizer: optax.GradientTransformation, max_len: int, *,
                    reduction: str = "mean", terms: Sequence[LossTerm] = (), mesh: Mesh | None = None,
                    length_bucket: int = 0) -> Callable[[TrainState, WindowAt, jax.Array], tuple[TrainState, Metrics]]:
  """(state, window_at, data_TxB) -> (state, metrics) over `mesh` (default: every device). metrics:
  `loss`, the window's mean token NLL (whatever the reduction), and `grad_norm`, before the clip. Every window
  runs at `max_len` steps (one program), or with `length_bucket` at `static_steps` (one program per bucket)."""
  mesh = parallel.data_mesh() if mesh is None else mesh

  @fast_random.traced_with_fast_random
  def train_step(state: TrainState, window_at: WindowAt, data_TxB: jax.Array, steps: int) -> tuple[TrainState, Metrics]:
    # A different dropout mask on every device and at every step, all reproducible from the seed.
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(DATA))
    window = cut_window(data_TxB, window_at.start, window_at.length, steps)
    loss_of = lambda params: window_loss(model, params, state.carry, window, train=True, rng=rng, reduction=reduction,
                                         terms=terms)
    (_, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    # Every device scores as many tokens as the others, so the mean of their means is the mean over the
    # whole batch: after pmean every device holds the global gradient, and the clip sees its norm.
    # One device: no pmean, which XLA:CPU still runs as a copy of every gradient (~8 ms/step at WikiText-2 size).
    grads = jax.lax.pmean(grads, DATA) if mesh.shape[DATA] > 1 else grads
    # As AWD-LSTM sets its param group's lr around optimizer.step(): the scaled lr for this update only.
    updates, opt_state = optim.update_with_lr_scale(optimizer, grads, state.opt_state, state.params, window_at.lr_scale)
    state = TrainState(optax.apply_updates(state.params, updates), opt_state, aux.carry, state.rng, state.step + 1)
    return state, {"loss": jax.lax.pmean(aux.nll_sum / aux.tokens, DATA), "grad_norm": optim.global_norm(grads)}

  # check_vma=False: the gradient of a replicated input then comes back per device, for pmean to average
  # as under pmap (with the check on, JAX would hand it back already summed over devices).
  # The state comes back laid out as it went in: on one device XLA would hand the carry back as P() for the
  # P('data') it was given, and the second call would compile the program again.
  out_shardings = (parallel.shardings(mesh, STATE_SPECS), parallel.shardings(mesh, REPLICATED))

  @functools.partial(jax.jit, donate_argnums=0, static_argnums=3, out_shardings=out_shardings)
  def compiled_step(state: TrainState, window_at: WindowAt, data_TxB: jax.Array, steps: int):
    per_device = jax.shard_map(functools.partial(train_step, steps=steps), mesh=mesh,
                               in_specs=(STATE_SPECS, REPLICATED, COLUMNS), out_specs=(STATE_SPECS, REPLICATED),
                               check_vma=False)
    return per_device(state, window_at, data_TxB)

  def train_step_on_mesh(state: TrainState, window_at: WindowAt, data_TxB: jax.Array) -> tuple[TrainState, Metrics]:
    # The step returns its state on the mesh. State made elsewhere (a fresh init on one device) moves there
    # before the first call, so that call compiles the program every later call of its length runs.
    if not parallel.on_mesh(state, mesh):
      state = parallel.put_tree(state, mesh, STATE_SPECS)
    return compiled_step(state, window_at, data_TxB, static_steps(window_at.length, max_len, length_bucket))

  train_step_on_mesh.compiled = compiled_step  # for counting its compilations (tests, benchmarks)
  train_step_on_mesh.steps_for = lambda length: static_steps(length, max_len, length_bucket)  # a window's program
  return train_step_on_mesh
