"""Where an lm_jax train step's time goes, from controlled ablations (see DERIVATION)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lm_jax.data.batching import window_at
from lm_jax.loss import window_loss

from benchmarks import jax_workload
from benchmarks.measure import median_seconds
from benchmarks.shapes import Shape

PARTS = ("features", "decoder_matmuls", "softmax_passes", "optimiser", "rest")
DERIVATION = (
    "Each part is jitted on its own with the step's shapes and timed (median after warm-up): features = "
    "forward and backward of the model's features (embedding, dropout, the recurrent or encoder layers) under a "
    "fixed cotangent; decoder_matmuls = the fused loss's three [T*B, H] x [H, V]-sized products (h W^T forward; e W "
    "and e^T h backward, e = exp(logits - max)), timed as plain matmuls of random arrays of those shapes; "
    "softmax_passes = the model's NLL (decoder and softmax cross-entropy, fused) forward + backward minus "
    "those matmuls (the bias column, max, exp, row sums, the bias gradient, the target terms); optimiser = "
    "the clip + SGD update alone; rest = the full train step - all parts: negative where running the parts "
    "in one program overlaps them, positive for the step's own overheads. Percentages are of the full step; "
    "raw times are in the JSON.")


def time_ms(fn: Callable, args: tuple, calls: int) -> float:
  run = lambda: jax.block_until_ready(fn(*args))
  run()  # compiles
  return 1000 * median_seconds(run, calls)


def step_breakdown(shape: Shape, step_ms: float) -> dict[str, dict[str, float]]:
  s = jax_workload.setup(shape)
  model, params, carry = s.model, s.state.params, s.state.carry
  window = window_at(s.train.padded_TxB, 0, shape.bptt, shape.bptt)
  rng = jax.random.PRNGKey(0)

  def features(p):
    return model.features(p, window.inputs_TxB, carry, window.valid_T, train=True, rng=rng).features_TxBxH

  cotangent_TxBxH = jax.random.normal(rng, (shape.bptt, shape.batch, shape.nhid))
  h_TxBxH = features(params)
  h_NxH = h_TxBxH.reshape(-1, shape.nhid)
  w_VxH = jax.random.uniform(rng, (shape.vocab, shape.nhid))
  exp_NxV = jax.random.uniform(rng, (h_NxH.shape[0], shape.vocab))
  fused_loss = jax.value_and_grad(lambda p, h: jnp.sum(model.nll(p, h, window.targets_TxB)), argnums=(0, 1))
  grads = jax.grad(lambda p: window_loss(model, p, carry, window, train=True, rng=rng)[0])(params)
  update = jax.jit(lambda g, o, p: optax.apply_updates(p, s.optimizer.update(g, o, p)[0]))
  ms = {
      "features": time_ms(jax.jit(jax.grad(lambda p: jnp.sum(features(p) * cotangent_TxBxH))), (params,),
                          shape.steps),
      "decoder_forward_matmul": time_ms(jax.jit(lambda h, w: h @ w.T), (h_NxH, w_VxH), shape.steps),
      "decoder_backward_matmuls": time_ms(jax.jit(lambda e, w, h: (e @ w, e.T @ h)), (exp_NxV, w_VxH, h_NxH),
                                          shape.steps),
      "fused_loss": time_ms(jax.jit(fused_loss), (params, h_TxBxH), shape.steps),
      "optimiser": time_ms(update, (grads, s.optimizer.init(params), params), shape.steps),
  }
  decoder_matmuls = ms["decoder_forward_matmul"] + ms["decoder_backward_matmuls"]
  parts = {
      "features": ms["features"],
      "decoder_matmuls": decoder_matmuls,
      "softmax_passes": ms["fused_loss"] - decoder_matmuls,
      "optimiser": ms["optimiser"],
  }
  parts["rest"] = step_ms - sum(parts.values())
  return {"pieces_ms": ms, "percent": {name: 100 * t / step_ms for name, t in parts.items()}}
