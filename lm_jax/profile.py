"""Where a train step's time goes: every part of the step jitted alone at the step's shapes and timed.

One mechanism for `lm-jax-profile` and the benchmark's step breakdown (benchmarks/step_time/). Parts of
an `rnn` family step, each a median of `calls` timed calls after one compiling call, the parts and the
step taking turns so that they all see the same load:

  embedding          the embedding lookup, its dropout (word_language_model's per position, or AWD-LSTM's
                     dropped word types), forward + backward (the backward is the dense [V, E] gradient)
  dropout_masks      AWD-LSTM's masks for the window drawn (word types, locked columns, weight drop)
  weight_drop        every layer's W_hh times its DropConnect mask, forward + backward
  locked_dropout     AWD-LSTM's locked masks on the embedding, between layers and on the output, forward +
                     backward
  layer_k_forward    recurrent layer k alone: its input projection and its scan
  layer_k_backward   layer k's forward + backward (its VJP, input gradient included) minus its forward
  decoder_matmuls    the fused loss's three [T*B, H] x [H, V]-sized products (h W^T forward; e W and e^T h
                     backward, e = exp(logits - max)), timed as plain matmuls of random arrays of those shapes
  softmax_passes     the model's fused NLL forward + backward minus decoder_matmuls (the bias column, max,
                     exp, row sums, the bias gradient, the target terms)
  regularisers       the loss's terms (AR, TAR), forward + backward
  optimiser          the clip + the configured optimiser's update
  host_overhead      a train-step call from the host that waits for its result (the trainer's call, timed
                     as the benchmarks time a step) minus the step on the device, timed per step over
                     PIPELINED_STEPS calls dispatched back to back with one wait at the end
  rest               the step minus every part above: word_language_model's dropout between layers, the
                     loss's masks, the gradient sums; negative where one program overlaps what the parts
                     time apart

The AWD-LSTM parts appear only for a model that has them. So the parts and `rest` add up to the step by
construction. Layer times are also given per time step (ms / bptt), and the parts made of matmuls (the
layers: their projections; the decoder) their GFLOP/s, against the machine's matmul ceiling when one is
given (`matmul_ceiling_gflops`). Timings of a loaded machine mean little: compare profiles taken under the
same load.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import statistics
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm_jax import fast_random, steps
from lm_jax.data.batching import DeviceSplit, window_at
from lm_jax.loss import LossTerm
from lm_jax.models import mogrifier
from lm_jax.models.interface import LanguageModel, ModelOutput
from lm_jax.models.recurrence import run_layer
from lm_jax.models.rnn_model import RNNModel

DERIVATION = (
    "Each part is jitted on its own with the step's shapes and timed (median after a compiling call): "
    "embedding = lookup + its dropout, forward and backward; AWD-LSTM's dropout_masks (drawn), weight_drop and "
    "locked_dropout (forward and backward); layer_k_forward = recurrent layer k alone; "
    "layer_k_backward = its forward + backward minus its forward; decoder_matmuls = the fused loss's three "
    "[T*B, H] x [H, V]-sized products (h W^T forward; e W and e^T h backward), timed as plain matmuls of random "
    "arrays of those shapes; softmax_passes = the model's fused NLL forward + backward minus those matmuls; "
    "regularisers = AR and TAR, forward and backward; optimiser = the clip + update alone; host_overhead = a "
    "train-step call that waits for its result minus the step on the device (calls dispatched back to back, one "
    "wait); rest = the step - all parts: negative where one program overlaps the parts, positive for the step's "
    "own work between them (word_language_model's dropout between layers, the loss's masks, the gradient sums).")


@dataclasses.dataclass(frozen=True)
class StepProfile:
  """A train step's time by part. `parts_ms` ends with 'rest' and sums to `step_ms`; `flops` holds the matmul
  FLOPs of the parts made of matmuls; `ceiling_gflops`, where measured, the machine's matmul speed."""

  step_ms: float
  parts_ms: dict[str, float]
  bptt: int
  description: str
  flops: dict[str, float] = dataclasses.field(default_factory=dict)
  ceiling_gflops: float | None = None

  @property
  def percent(self) -> dict[str, float]:
    return {part: 100 * ms / self.step_ms for part, ms in self.parts_ms.items()}

  @property
  def per_time_step_ms(self) -> dict[str, float]:
    """Each recurrent layer's forward and backward per time step of the window."""
    return {part: ms / self.bptt for part, ms in self.parts_ms.items() if part.startswith("layer_")}

  @property
  def gflops(self) -> dict[str, float]:
    """GFLOP/s of each part with matmul FLOPs (none where its time is not positive)."""
    return {part: flops / self.parts_ms[part] / 1e6 for part, flops in self.flops.items() if self.parts_ms[part] > 0}

  def to_json(self) -> dict:
    return {"step_ms": self.step_ms, "parts_ms": self.parts_ms, "percent": self.percent,
            "per_time_step_ms": self.per_time_step_ms, "bptt": self.bptt, "description": self.description,
            "flops": self.flops, "gflops": self.gflops, "ceiling_gflops": self.ceiling_gflops}

  def table(self, bar_width: int = 30) -> str:
    """Part, ms, % of the step, ms per time step, GFLOP/s (and % of the ceiling) and a text bar (of |ms|, so a
    negative rest shows too)."""
    widest = max(abs(ms) for ms in self.parts_ms.values())
    ceiling = f" (ceiling {self.ceiling_gflops:.1f})" if self.ceiling_gflops else ""
    lines = [f"{self.description}: {self.step_ms:.2f} ms per train step", "",
             f"{'part':<18} {'ms':>9} {'% of step':>10} {'ms per time step':>17} {'GFLOP/s' + ceiling:>24}"]
    per_time_step, gflops = self.per_time_step_ms, self.gflops
    for part, ms in self.parts_ms.items():
      bar = "#" * round(bar_width * abs(ms) / widest) if widest else ""
      per_step = f"{per_time_step[part]:.3f}" if part in per_time_step else ""
      speed = f"{gflops[part]:.1f}" if part in gflops else ""
      if speed and self.ceiling_gflops:
        speed += f" ({100 * gflops[part] / self.ceiling_gflops:.0f}%)"
      lines.append(f"{part:<18} {ms:9.2f} {self.percent[part]:9.1f}% {per_step:>17} {speed:>24}  {bar}")
    lines.append(f"{'step':<18} {self.step_ms:9.2f} {100:9.1f}%")
    return "\n".join(lines) + "\n"


def profile_step(model: LanguageModel, optimizer: optax.GradientTransformation, state: steps.TrainState,
                 train_step: Callable, split: DeviceSplit, bptt: int, calls: int, terms: Sequence[LossTerm] = (),
                 ceiling_gflops: float | None = None) -> StepProfile:
  """Times the parts of `train_step` (made by steps.make_train_step for `model`, `optimizer`, `bptt` and the loss
  `terms`) on the first whole window of `split`, every part and the step taking turns, `calls` rounds. `state` is
  donated to the step: do not use it after."""
  if not isinstance(model, RNNModel):
    raise ValueError(f"the time profile covers the rnn family only, not kind={model.kind}")
  if calls < 1:
    raise ValueError(f"the profile needs at least one timed call per part, not {calls}")
  runs = _part_runs(model, optimizer, state, split, bptt, terms)  # before the step consumes `state`
  runs.update(_step_runs(train_step, state, split, bptt))
  # Compiled (at the first call) under the form of random draws the train step uses.
  ms = fast_random.traced_with_fast_random(_medians_ms)(runs, calls)
  parts = {part: ms[part] for part in ("embedding", "dropout_masks", "weight_drop", "locked_dropout") if part in ms}
  for k in range(len(model.sizes)):
    parts[f"layer_{k}_forward"] = ms[f"layer_{k}_forward"]
    parts[f"layer_{k}_backward"] = ms[f"layer_{k}_forward_backward"] - ms[f"layer_{k}_forward"]
  parts["decoder_matmuls"] = ms["decoder_forward_matmul"] + ms["decoder_backward_matmuls"]
  parts["softmax_passes"] = ms["fused_loss"] - parts["decoder_matmuls"]
  if "regularisers" in ms:
    parts["regularisers"] = ms["regularisers"]
  parts["optimiser"] = ms["optimiser"]
  parts["host_overhead"] = ms["step"] - ms["step_on_device"]
  parts["rest"] = ms["step"] - sum(parts.values())
  batch = split.padded_TxB.shape[1]
  return StepProfile(ms["step"], parts, bptt, model.describe(), matmul_flops(model, bptt, batch), ceiling_gflops)


def matmul_flops(model: RNNModel, bptt: int, batch: int) -> dict[str, float]:
  """The FLOPs of the parts made of matmuls, 2 per multiply-add: a layer's forward projects T*B rows of its input
  and of its h (x W_ih, h W_hh: 2 T B (I + H) G); its backward takes twice that (the input's and h's gradients,
  and both weights'); the decoder's three products 3 x 2 T B H V. A Mogrifier's mixing products are left out."""
  gates = mogrifier.RNN_CELLS[model.cell].num_gates
  rows = bptt * batch
  flops = {}
  for k, (size_in, size) in enumerate(zip((model.emsize,) + model.sizes[:-1], model.sizes)):
    forward = 2 * rows * (size_in + size) * gates * size
    flops[f"layer_{k}_forward"], flops[f"layer_{k}_backward"] = forward, 2 * forward
  flops["decoder_matmuls"] = 3 * 2 * rows * model.sizes[-1] * model.vocab_size
  return flops


def matmul_ceiling_gflops(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """The device's matmul speed: GFLOP/s of a jitted n x n @ n x n product in `dtype` (float32 accumulation),
  best of `repeats` after one compiling call."""
  a_NxN, b_NxN = (jax.random.normal(key, (n, n)).astype(dtype) for key in jax.random.split(jax.random.PRNGKey(0)))
  product = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  return best_gflops(lambda: product(a_NxN, b_NxN).block_until_ready(), n, repeats)


def best_gflops(matmul: Callable[[], object], n: int, repeats: int) -> float:
  """GFLOP/s of `matmul`, an n x n @ n x n product that returns when done, best of `repeats` after one warm-up
  call (that compiles it)."""
  matmul()
  return 2 * n ** 3 / min(_seconds(matmul) for _ in range(repeats)) / 1e9


def _seconds(run: Callable[[], object]) -> float:
  start = time.perf_counter()
  run()
  return time.perf_counter() - start


# Steps dispatched back to back per timed call of `step_on_device`: the host prepares each while the device
# runs the one before, so the time per step approaches the device's alone.
PIPELINED_STEPS = 5


def _medians_ms(runs: dict[str, Callable[[], tuple[object, int]]], calls: int) -> dict[str, float]:
  """Each run's median wall time per step in ms. A run returns (what to wait for, steps it ran); the runs take
  turns, so that they all see the same load, after one call each that compiles."""
  for run in runs.values():
    jax.block_until_ready(run()[0])
  times = {name: [] for name in runs}
  for _ in range(calls):
    for name, run in runs.items():
      start = time.perf_counter()
      result, count = run()
      jax.block_until_ready(result)
      times[name].append((time.perf_counter() - start) / count)
  return {name: 1000 * statistics.median(seconds) for name, seconds in times.items()}


@jax.jit
def _masked(arrays: dict[str, jax.Array], masks: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Each array times its mask, forward and backward (d/dx of sum(x * mask * x)), as the step runs the masks."""
  masked_backward = lambda x, mask: jax.grad(lambda x: jnp.sum(x * mask * jax.lax.stop_gradient(x)))(x)
  return jax.tree.map(masked_backward, arrays, masks)


def _part_runs(model: RNNModel, optimizer: optax.GradientTransformation, state: steps.TrainState,
               split: DeviceSplit, bptt: int, terms: Sequence[LossTerm]) -> dict[str, Callable[[], tuple[object, int]]]:
  """The parts, each jitted on its own at the step's shapes."""
  params, carry = state.params, state.carry
  window = window_at(split.padded_TxB, 0, bptt, bptt)
  batch = window.inputs_TxB.shape[1]
  rng = jax.random.PRNGKey(0)
  once = lambda fn, *args: (lambda: (fn(*args), 1))
  runs = {}
  masks = model.dropout_masks(rng, batch)  # AWD-LSTM's, by name (none for word_language_model's dropout)
  if masks:
    runs["dropout_masks"] = once(jax.jit(functools.partial(model.dropout_masks, batch_size=batch)), rng)

  def embedding(embedding_VxE: jax.Array, tokens_TxB: jax.Array) -> jax.Array:
    x_TxBxE = embedding_VxE[tokens_TxB]
    if "embedding_V" in masks:
      return x_TxBxE * masks["embedding_V"][tokens_TxB][..., None]
    if model.locked_dropout or not model.dropout:  # AWD's input mask is locked_dropout's
      return x_TxBxE
    keep = jax.random.bernoulli(rng, 1.0 - model.dropout, x_TxBxE.shape)
    return x_TxBxE * keep / (1.0 - model.dropout)

  x_TxBxE = embedding(params["embedding"], window.inputs_TxB)
  embedding_loss = lambda e, tokens_TxB: jnp.sum(embedding(e, tokens_TxB) * x_TxBxE)
  runs["embedding"] = once(jax.jit(jax.grad(embedding_loss)), params["embedding"], window.inputs_TxB)

  weight_masks = {name: mask for name, mask in masks.items() if name.startswith("w_hh_")}
  if weight_masks:
    hidden = {name: params[f"layer_{name.removeprefix('w_hh_')}_w_hh"] for name in weight_masks}
    runs["weight_drop"] = once(_masked, hidden, weight_masks)

  # Each layer at its own input: the previous layer's output (no dropout: the values do not change the time).
  # Every array is an argument, as in the step: a constant valid_T would let XLA drop the per-step select.
  layer = functools.partial(_layer_outputs, mogrifier.layer_cell(model.cell, model.mogrify_rounds), model.unroll)
  x_TxBxI = x_TxBxE
  layer_inputs = []
  for k, size in enumerate(model.sizes):
    weights = {name.removeprefix(f"layer_{k}_"): p for name, p in params.items() if name.startswith(f"layer_{k}_")}
    cotangent_TxBxH = jax.random.normal(jax.random.fold_in(rng, k), (bptt, batch, size))
    layer_loss = lambda w, x, s, v, c=cotangent_TxBxH: jnp.sum(layer(w, x, s, v) * c)
    args = (weights, x_TxBxI, carry[k], window.valid_T)
    runs[f"layer_{k}_forward"] = once(jax.jit(layer), *args)
    runs[f"layer_{k}_forward_backward"] = once(jax.jit(jax.grad(layer_loss, argnums=(0, 1))), *args)
    layer_inputs.append(x_TxBxI)
    x_TxBxI = layer(*args)

  # The locked masks, each on the activations it multiplies: the embedding, each layer's output.
  locked_inputs = {"input_BxE": x_TxBxE, "output_BxH": x_TxBxI,
                   **{f"hidden_{k}_BxH": x for k, x in enumerate(layer_inputs[1:])}}
  locked = [name for name in masks if name in locked_inputs]
  if locked:
    runs["locked_dropout"] = once(_masked, {name: locked_inputs[name] for name in locked},
                                  {name: masks[name][None] for name in locked})

  h_TxBxH = x_TxBxI
  h_NxH = h_TxBxH.reshape(-1, h_TxBxH.shape[-1])
  w_VxH = jax.random.uniform(rng, (model.vocab_size, h_NxH.shape[1]))
  exp_NxV = jax.random.uniform(rng, (h_NxH.shape[0], model.vocab_size))
  runs["decoder_forward_matmul"] = once(jax.jit(lambda h, w: h @ w.T), h_NxH, w_VxH)
  runs["decoder_backward_matmuls"] = once(jax.jit(lambda e, w, h: (e @ w, e.T @ h)), exp_NxV, w_VxH, h_NxH)
  fused_loss = jax.value_and_grad(lambda p, h, targets_TxB: jnp.sum(model.nll(p, h, targets_TxB)), argnums=(0, 1))
  runs["fused_loss"] = once(jax.jit(fused_loss), params, h_TxBxH, window.targets_TxB)
  if terms:
    def regularisers(h_TxBxH: jax.Array, raw_TxBxH: jax.Array, valid_T: jax.Array) -> jax.Array:
      output = ModelOutput(h_TxBxH, carry, {"top_raw_TxBxH": raw_TxBxH})
      return sum(term(output, valid_T) for term in terms)
    runs["regularisers"] = once(jax.jit(jax.grad(regularisers, argnums=(0, 1))), h_TxBxH, h_TxBxH, window.valid_T)
  gradients = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(lambda g, o, p: optax.apply_updates(p, optimizer.update(g, o, p)[0]))
  runs["optimiser"] = once(update, gradients, state.opt_state, params)
  return runs


def _layer_outputs(cell, unroll: int, weights: dict, x_TxBxI: jax.Array, state, valid_T: jax.Array) -> jax.Array:
  return run_layer(cell, weights, x_TxBxI, state, valid_T, unroll)[0]


def _step_runs(train_step: Callable, state: steps.TrainState, split: DeviceSplit,
               bptt: int) -> dict[str, Callable[[], tuple[object, int]]]:
  """`step`: one call that waits for its result, as the benchmarks time a step; `step_on_device`:
  PIPELINED_STEPS calls dispatched back to back, one wait."""
  window = steps.WindowAt(0, bptt)  # host ints, as the trainer passes them
  current = [state]

  def run_steps(count: int) -> tuple[object, int]:
    for _ in range(count):
      current[0], metrics = train_step(current[0], window, split.padded_TxB)
    return (current[0], metrics), count

  return {"step": lambda: run_steps(1), "step_on_device": lambda: run_steps(PIPELINED_STEPS)}


def plot_png(profile: StepProfile) -> bytes:
  """A horizontal bar chart of the parts (ms, labelled with % of the step), as PNG bytes."""
  import matplotlib
  matplotlib.use("Agg")  # files only, no display needed
  from matplotlib import pyplot as plt

  names = list(profile.parts_ms)[::-1]  # the first part on top
  figure, axis = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
  values = [profile.parts_ms[name] for name in names]
  axis.barh(names, values, color=["tab:gray" if name in ("rest", "host_overhead") else "tab:blue" for name in names])
  for y, (name, value) in enumerate(zip(names, values)):
    axis.annotate(f" {profile.percent[name]:.0f}%", (max(value, 0), y), va="center")
  axis.set_xlabel("ms per train step")
  axis.set_title(f"{profile.description}: {profile.step_ms:.1f} ms per step")
  axis.margins(x=0.15)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=120)
  plt.close(figure)
  return buffer.getvalue()


def random_tokens(vocab_size: int, batch_size: int, bptt: int, windows: int, seed: int = 0) -> np.ndarray:
  """Uniform random ids filling `windows` whole windows at `batch_size` (+1 row for the last targets)."""
  return np.random.default_rng(seed).integers(0, vocab_size, (windows * bptt + 1) * batch_size, dtype=np.int32)
