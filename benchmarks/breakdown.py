"""Where an lm_jax train step's time goes, from controlled ablations (see DERIVATION)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lm_jax import steps
from lm_jax.data.batching import slice_window
from lm_jax.models.rnn_model import RNNModel, zero_carry

from benchmarks import jax_model
from benchmarks.measure import median_seconds
from benchmarks.shapes import Shape

DERIVATION = (
    "Each part is jitted on its own with the step's shapes and timed (median after warm-up): the embedding "
    "lookup; the features (embedding, dropout, recurrent layers); the decoder matmul; a plain log-softmax "
    "cross-entropy on its logits; the loss forward; the loss forward + backward; the optimiser update (clip + "
    "SGD) alone. Then recurrence = features - embedding (so it includes dropout), backward = (forward + "
    "backward) - forward, and rest = the full train step - all parts: negative where fusing the parts into one "
    "program saves time, positive for the step's own overheads. Percentages are of the full step; raw times "
    "are in the JSON.")


def time_ms(fn: Callable, args: tuple, calls: int) -> float:
  run = lambda: jax.block_until_ready(fn(*args))
  run()  # compiles
  return 1000 * median_seconds(run, calls)


def softmax_cross_entropy(logits_TxBxV: jax.Array, targets_TxB: jax.Array) -> jax.Array:
  """Summed -log softmax(logits)[target], written out plainly: the cost of the softmax alone, however
  lm_jax fuses it with the decoder inside the step."""
  target_logit_TxB = jnp.take_along_axis(logits_TxBxV, targets_TxB[..., None], axis=-1)[..., 0]
  return jnp.sum(jax.nn.logsumexp(logits_TxBxV, axis=-1) - target_logit_TxB)


def step_breakdown(shape: Shape, step_ms: float) -> dict[str, dict[str, float]]:
  s = jax_model.setup(shape)
  model, params, data_TxB = s.model, s.params, s.train.padded_TxB
  inputs_TxB, targets_TxB = slice_window(data_TxB, 0, shape.bptt)
  carry = zero_carry(shape.cell, shape.nlayers, shape.batch, shape.nhid)
  valid_T = jnp.ones(shape.bptt, bool)
  rng = jax.random.PRNGKey(0)

  def loss(p, c, r):
    return steps.window_loss(model, p, c, data_TxB, 0, shape.bptt, shape.bptt, True, r)[0]

  embed = jax.jit(lambda p, x: model.apply({"params": p}, x, method=lambda m, x: m.embedding_VxE[x]))
  features = jax.jit(lambda p, x, c, r: model.apply({"params": p}, x, c, valid_T, train=True, rngs={"dropout": r},
                                                    method=RNNModel.features)[0])
  decode = jax.jit(lambda p, h: model.apply({"params": p}, h, method=RNNModel.decode))
  cross_entropy = jax.jit(softmax_cross_entropy)
  forward_backward = jax.jit(jax.value_and_grad(loss))
  update = jax.jit(lambda g, o, p: optax.apply_updates(p, s.optimizer.update(g, o, p)[0]))

  h_TxBxH = features(params, inputs_TxB, carry, rng)
  logits_TxBxV = decode(params, h_TxBxH)
  grads = forward_backward(params, carry, rng)[1]
  ms = {
      "embedding": time_ms(embed, (params, inputs_TxB), shape.steps),
      "features": time_ms(features, (params, inputs_TxB, carry, rng), shape.steps),
      "decoder": time_ms(decode, (params, h_TxBxH), shape.steps),
      "softmax_ce": time_ms(cross_entropy, (logits_TxBxV, targets_TxB), shape.steps),
      "forward": time_ms(jax.jit(loss), (params, carry, rng), shape.steps),
      "forward_backward": time_ms(forward_backward, (params, carry, rng), shape.steps),
      "optimiser": time_ms(update, (grads, s.optimizer.init(params), params), shape.steps),
  }
  parts = {
      "embedding": ms["embedding"],
      "recurrence": ms["features"] - ms["embedding"],
      "decoder": ms["decoder"],
      "softmax_ce": ms["softmax_ce"],
      "backward": ms["forward_backward"] - ms["forward"],
      "optimiser": ms["optimiser"],
  }
  parts["rest"] = step_ms - sum(parts.values())
  return {"pieces_ms": ms, "percent": {name: 100 * t / step_ms for name, t in parts.items()}}
