"""Howard & Ruder (2018)'s fine-tuning recipe for any task and any optimiser of lm_jax/optim.py: layer groups with
discriminative learning rates, gradual unfreezing, and the slanted triangular learning rate (STLR). Its fields live in
config.optim, so language-model fine-tuning (lm-jax-train) and classifiers (lm-jax-classify) read the same ones:

  layer_lr_decay   group k's lr is group k + 1's / layer_lr_decay (1: one lr for all; ULMFiT's 2.6). The top group
                   trains at config.optim.lr.
  unfreeze_every   0: every group trains from the first step. n > 0, gradual unfreezing: the top group alone for n
                   epochs, then one more group (downwards) every n epochs (ULMFiT: 1). The last group must be unfrozen
                   by the last epoch.
  stage_lr_factors with gradual unfreezing, each stage's lr as a multiple of config.optim.lr: one per layer group,
                   stage s (0-based: the top group alone first) trains at lr * stage_lr_factors[s], the last stage
                   until the run ends (empty: every stage at lr, the ULMFiT scripts' one peak lr). fastai's text
                   tutorial lowers it stage by stage: 2e-2, 1e-2, 5e-3, then 1e-3 (with 5 groups: (2, 1, 0.5, 0.1, 0.1)
                   at lr 1e-2).
  schedule='stlr'  each step's lr is lr * (1 + p (ratio - 1)) / ratio, p rising linearly from 0 to 1 over the first
                   cut = floor(stlr_cut_frac * T) steps of a cycle of T steps and falling back linearly over the rest:
                   p = t / cut for t < cut, else 1 - (t - cut) / (T - cut) (stlr_cut_frac 0.1, stlr_ratio 32). With
                   T * cut_frac whole, T - cut is the paper's cut * (1 / cut_frac - 1); otherwise the paper's p dips
                   below 0 in the last steps and this one does not (fastai's CircularLR divides by T - cut too).
                   A cycle restarts whenever a group is unfrozen, as ULMFiT's scripts ran one fit per unfreezing
                   stage; without gradual unfreezing one cycle spans the whole run.

Layer groups (bottom first) come from the task: a classifier family's `layer_groups()` (embedding, each recurrent
layer, head), a language model's `lm_layer_groups` (each layer, then the embedding with the decoder on top, as
fastai's awd_lstm_lm_split: tied, they are one matrix).

A frozen group is frozen as torch's requires_grad=False is: its gradient is zeroed before the clip (the norm leaves it
out), and its whole update is skipped, weight decay included, with its optimiser state (Adam's moments and its step
count) left as it was; so a group unfrozen later starts its optimiser afresh, as torch's Adam does for a parameter's
first gradient. Each group has its own optimiser state: the groups' updates are `optax.masked` transforms in a chain.
The lr and the groups' on/off flags are hyperparameters in the optimiser state (`at_epoch` sets them between epochs),
and each step's STLR factor comes in as the step's `lr_scale`: nothing recompiles when they change.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm_jax.errors import UserError

Groups = Sequence[Sequence[str]]  # parameter names per layer group, bottom first


def uses_groups(c: ml_collections.ConfigDict) -> bool:
  """Whether config.optim asks for layer groups (discriminative lrs or gradual unfreezing)."""
  return c.layer_lr_decay != 1.0 or c.unfreeze_every > 0


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError for a bad recipe field of config.optim (the group-count check is `validate_unfreezing`)."""
  if c.layer_lr_decay < 1.0:
    raise UserError(f"config.optim.layer_lr_decay must be >= 1 (got {c.layer_lr_decay}); it divides each lower "
                    "group's lr: 2.6 is ULMFiT's, 1 gives every group the same lr")
  if c.unfreeze_every < 0:
    raise UserError(f"config.optim.unfreeze_every must be >= 0 (got {c.unfreeze_every}); 0 trains every group from "
                    "the start, 1 unfreezes one more group per epoch (ULMFiT's)")
  if not 0.0 < c.stlr_cut_frac < 1.0:
    raise UserError(f"config.optim.stlr_cut_frac must be in (0, 1) (got {c.stlr_cut_frac}); ULMFiT's is 0.1")
  if c.stlr_ratio < 1.0:
    raise UserError(f"config.optim.stlr_ratio must be >= 1 (got {c.stlr_ratio}); ULMFiT's is 32")
  if c.stage_lr_factors and not c.unfreeze_every:
    raise UserError("config.optim.stage_lr_factors sets the lr of each gradual-unfreezing stage; pass "
                    "--config.optim.unfreeze_every=1 (or more), or leave stage_lr_factors empty")
  if any(f <= 0 for f in c.stage_lr_factors):
    raise UserError(f"config.optim.stage_lr_factors must all be > 0 (got {tuple(c.stage_lr_factors)}); each "
                    "multiplies config.optim.lr, e.g. '(2, 1, 0.5, 0.1, 0.1)'")
  if uses_groups(c) and c.name == "nt_asgd":
    raise UserError("layer groups (config.optim.layer_lr_decay, unfreeze_every) need an optimiser whose update is "
                    "linear in its lr and that averages nothing; pass --config.optim.name=adam (or adamw, sgd)")


def validate_unfreezing(c: ml_collections.ConfigDict, epochs: int, num_groups: int) -> None:
  """Gradual unfreezing must reach the bottom group by the last epoch."""
  last_start = (num_groups - 1) * c.unfreeze_every + 1
  if c.unfreeze_every and last_start > epochs:
    raise UserError(f"gradual unfreezing (config.optim.unfreeze_every={c.unfreeze_every}) unfreezes the last of the "
                    f"model's {num_groups} layer groups at epoch {last_start}, past the last epoch {epochs}; pass "
                    f"--config.epochs={last_start} or more, or a smaller unfreeze_every")
  if c.stage_lr_factors and len(c.stage_lr_factors) != num_groups:
    raise UserError(f"config.optim.stage_lr_factors has {len(c.stage_lr_factors)} factors for the model's "
                    f"{num_groups} layer groups (one per unfreezing stage); pass {num_groups} of them")


def lm_layer_groups(param_names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
  """A language model's groups: `layer_K_*` per layer K, bottom first, then everything else (the embedding, the
  decoder, a final norm) as the top group."""
  layers: dict[int, list[str]] = {}
  top = []
  for name in sorted(param_names):
    match = re.match(r"layer_(\d+)_", name)
    (layers.setdefault(int(match.group(1)), []) if match else top).append(name)
  return tuple(tuple(layers[k]) for k in sorted(layers)) + (tuple(top),)


def lr_factors(layer_lr_decay: float, num_groups: int) -> np.ndarray:
  """Each group's lr as a fraction of config.optim.lr, bottom first: layer_lr_decay ** -(groups above it)."""
  return np.float64(layer_lr_decay) ** -np.arange(num_groups - 1, -1, -1, dtype=np.float64)


def unfreezing_stage(c: ml_collections.ConfigDict, epoch: int, num_groups: int) -> int:
  """The gradual-unfreezing stage (0-based) that `epoch` (1-based) is in: stage s trains the top s + 1 groups.
  Without unfreezing every epoch is in the last stage."""
  return num_groups - 1 if not c.unfreeze_every else min(num_groups - 1, (epoch - 1) // c.unfreeze_every)


def trainable_flags(c: ml_collections.ConfigDict, epoch: int, num_groups: int) -> np.ndarray:
  """float32 [G], bottom first: 1 for the groups that train in `epoch` (1-based), 0 for the frozen ones."""
  count = unfreezing_stage(c, epoch, num_groups) + 1
  return (np.arange(num_groups) >= num_groups - count).astype(np.float32)


def stlr(t: int, steps: int, cut_frac: float, ratio: float) -> float:
  """Howard & Ruder's slanted triangular factor of the peak lr at step t (0-based) of a cycle of `steps` steps."""
  cut = int(np.floor(steps * cut_frac))
  p = t / cut if t < cut else 1.0 - (t - cut) / (steps - cut)
  return (1.0 + p * (ratio - 1.0)) / ratio


def cycle_epochs(c: ml_collections.ConfigDict, epoch: int, epochs: int, num_groups: int) -> range:
  """The epochs of the STLR cycle holding `epoch`: its unfreezing stage, or the whole run without unfreezing."""
  stage = unfreezing_stage(c, epoch, num_groups)
  start = stage * c.unfreeze_every + 1
  return range(start, epochs + 1) if stage == num_groups - 1 else range(start, start + c.unfreeze_every)


def stage_lr_factor(c: ml_collections.ConfigDict, epoch: int, num_groups: int) -> float:
  """The factor of `epoch`'s unfreezing stage on the lr (stage_lr_factors; 1 without them)."""
  return float(c.stage_lr_factors[unfreezing_stage(c, epoch, num_groups)]) if c.stage_lr_factors else 1.0


def epoch_lr_scales(c: ml_collections.ConfigDict, epoch: int, epochs: int, num_groups: int,
                    steps_in: Callable[[int], int]) -> np.ndarray:
  """The factor of each step of `epoch` on the epoch's lr: its stage's factor times STLR's (1 under an epoch-level
  schedule). `steps_in(e)`: the number of steps of epoch e."""
  steps, stage = steps_in(epoch), stage_lr_factor(c, epoch, num_groups)
  if c.schedule != "stlr":
    return np.full(steps, stage)
  cycle = cycle_epochs(c, epoch, epochs, num_groups)
  before = sum(steps_in(e) for e in cycle if e < epoch)
  total = sum(steps_in(e) for e in cycle)
  return stage * np.array([stlr(before + b, total, c.stlr_cut_frac, c.stlr_ratio) for b in range(steps)])


def at_epoch(c: ml_collections.ConfigDict, opt_state: optax.InjectHyperparamsState, lr: float, epoch: int,
             place: Callable[[np.ndarray], jax.Array] = jnp.asarray) -> optax.InjectHyperparamsState:
  """The optimiser state for `epoch`: its lr and, with layer groups, the groups that train in it. `place` puts a
  value where the state lives (the LM's mesh)."""
  hyperparams = dict(opt_state.hyperparams, learning_rate=place(np.float32(lr)))
  if "trainable" in hyperparams:
    hyperparams["trainable"] = place(trainable_flags(c, epoch, hyperparams["trainable"].shape[0]))
  return opt_state._replace(hyperparams=hyperparams)


# ---- the optax side: make_optimizer (optim.py) builds these inside its injected-hyperparameter factory


def group_index(params: optax.Params, groups: Groups) -> dict[str, int]:
  """Each parameter's group; every parameter must be in exactly one."""
  index = {name: g for g, names in enumerate(groups) for name in names}
  missing = sorted(set(params) - set(index))
  if missing:
    raise ValueError(f"parameters in no layer group: {', '.join(missing)}")
  return index


def zero_frozen_groups(trainable_G: jax.Array, groups: Groups) -> optax.GradientTransformation:
  """Gradients of the frozen groups set to 0 (before the clip, so its norm leaves them out)."""

  def update(grads, state, params=None):
    index = group_index(grads, groups)
    return {name: g * trainable_G[index[name]] for name, g in grads.items()}, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _only_while(on: jax.Array, inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner` while `on` is nonzero; otherwise a zero update and the state left exactly as it was."""

  def update(updates, state, params=None):
    new_updates, new_state = inner.update(updates, state, params)
    keep = on > 0
    new_updates = jax.tree.map(lambda u: jnp.where(keep, u, jnp.zeros_like(u)), new_updates)
    return new_updates, jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_state, state)

  return optax.GradientTransformation(inner.init, update)


def by_group(update_at: Callable[[jax.Array], optax.GradientTransformation], learning_rate: jax.Array,
             trainable_G: jax.Array, groups: Groups, c: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Each group's own optimiser (`update_at(its lr)`, its own state) on its own parameters, skipped while frozen."""
  factors = lr_factors(c.layer_lr_decay, len(groups))
  in_group = lambda g: (lambda params: {name: index == g for name, index in group_index(params, groups).items()})
  return optax.chain(*[optax.masked(_only_while(trainable_G[g], update_at(learning_rate * float(factors[g]))),
                                    in_group(g)) for g in range(len(groups))])
