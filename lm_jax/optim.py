"""The config.optim group -> optax, and the host-side learning-rate schedules.

An optimiser is one entry of OPTIMIZERS (name -> builder of the update that follows the clip), a schedule one entry
of SCHEDULES (name -> the lr of the next epoch). Every optimiser runs as clip_by_global_norm(clip), then its update,
with the lr injected into the optimiser state so that the host can change it between epochs, and the train step scale
it per step, without recompiling. Layer groups, discriminative lrs, gradual unfreezing and STLR: lm_jax/finetuning.py.

`nt_asgd` is AWD-LSTM's non-monotonically triggered averaged SGD: SGD until validation stops
improving (`should_start_averaging`), then torch.optim.ASGD(t0=0, lambd=0), i.e. the same SGD step
plus a running average of the iterates, which validation, the best checkpoint and the test use
(`evaluation_params`). The switch is a flag in the optimiser state that the host sets between epochs.

Between epochs, each optimiser's `EpochPolicy` (the next lr, NT-ASGD's switch and averaged evaluation weights,
fine-tuning's start and stop): the training loop calls it for every optimiser.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Collection, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm_jax import finetuning
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


# Which parameters weight decay applies to: None (all), or a callable params -> {name: bool} (make_optimizer).
DecayMask = Callable[[optax.Params], Any] | None


def _with_l2(c: ml_collections.ConfigDict, update: optax.GradientTransformation,
             decay_mask: DecayMask) -> optax.GradientTransformation:
  # torch.optim's weight_decay (SGD, Adam, ASGD): wd * param added to the (already clipped) gradient.
  return optax.chain(optax.add_decayed_weights(c.weight_decay, decay_mask), update) if c.weight_decay else update


class AveragedSGDState(NamedTuple):
  averaging: jax.Array   # bool: averaging the iterates (set by the host: start_averaging)
  asgd_steps: jax.Array  # steps taken while averaging
  eta: jax.Array         # the lr torch's ASGD steps with next: the lr of the step before
  ax: optax.Params       # the running average of the iterates


def averaged_sgd(learning_rate: float) -> optax.GradientTransformation:
  """SGD, and once `averaging` is set, torch.optim.ASGD(t0=0, lambd=0)'s step and average, exactly: its
  step k uses the lr given at step k - 1 (its state keeps the lr for the next step; the first step uses
  its own), and ax = p after steps 1 and 2, then ax += (p - ax) / (k - 1)."""

  def init(params: optax.Params) -> AveragedSGDState:
    return AveragedSGDState(jnp.zeros((), bool), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32),
                            jax.tree.map(jnp.zeros_like, params))

  def update(grads, state: AveragedSGDState, params=None):
    lr = jnp.asarray(learning_rate, jnp.float32)
    eta = jnp.where(state.averaging & (state.asgd_steps > 0), state.eta, lr)
    updates = jax.tree.map(lambda g: -eta * g, grads)
    new_params = optax.apply_updates(params, updates)  # as the step's caller will: the iterate itself
    mu = 1.0 / jnp.maximum(1, state.asgd_steps).astype(jnp.float32)
    average = lambda ax, p: jnp.where(state.asgd_steps <= 1, p, ax + (p - ax) * mu)
    ax = jax.tree.map(lambda ax, p: jnp.where(state.averaging, average(ax, p), ax), state.ax, new_params)
    steps = state.asgd_steps + state.averaging.astype(jnp.int32)
    return updates, AveragedSGDState(state.averaging, steps, jnp.where(state.averaging, lr, state.eta), ax)

  return optax.GradientTransformation(init, update)


def _plateau(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """The reference's: divide by lr_decay when validation loss did not improve."""
  return lr if improved else lr / c.lr_decay


def _decay_after(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """Zaremba et al.'s: lr0 / lr_decay ** max(0, epoch + 1 - lr_decay_start)."""
  return c.lr / c.lr_decay ** max(0, epoch + 1 - c.lr_decay_start)


def _when(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """AWD-LSTM's: divide by 10 after each epoch listed in `when`."""
  return lr / 10.0 if epoch in c.when else lr


# name -> (optim config, lr of the epoch that ended, its 1-based number, whether validation improved) -> next lr.
# 'stlr' keeps the epoch's lr: its slanted triangle is per step (lm_jax/finetuning.py, each step's lr_scale).
SCHEDULES: dict[str, Callable[[ml_collections.ConfigDict, float, int, bool], float]] = {
    "plateau": _plateau,
    "decay_after": _decay_after,
    "when": _when,
    "stlr": lambda c, lr, epoch, improved: lr,
}


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the bad config.optim field and the fix."""
  if c.name not in OPTIMIZERS:
    raise UserError(f"unknown optimizer {c.name!r}; pass --config.optim.name= one of {', '.join(OPTIMIZERS)}")
  if c.schedule not in SCHEDULES:
    raise UserError(f"unknown lr schedule {c.schedule!r}; pass --config.optim.schedule= one of {', '.join(SCHEDULES)}")
  if c.lr <= 0:
    raise UserError(f"config.optim.lr must be > 0 (got {c.lr}); pass e.g. --config.optim.lr=20")
  if c.clip < 0:
    raise UserError(f"config.optim.clip must be >= 0 (got {c.clip}); pass e.g. --config.optim.clip=0.25, or 0 for none")
  if c.weight_decay < 0:
    raise UserError(f"config.optim.weight_decay must be >= 0 (got {c.weight_decay}); pass e.g. 1.2e-6")
  if c.lr_decay < 1.0:
    raise UserError(f"config.optim.lr_decay must be >= 1 (got {c.lr_decay}); it divides the lr, e.g. 4")
  if c.nonmono < 1:
    raise UserError(f"config.optim.nonmono must be >= 1 (got {c.nonmono}); pass e.g. --config.optim.nonmono=5")
  if any(not isinstance(e, int) or e < 1 for e in c.when):
    raise UserError(f"config.optim.when must list epochs >= 1 (got {list(c.when)}); pass e.g. "
                    "--config.optim.when='(300, 400)'")
  if c.when and c.schedule != "when":
    raise UserError(f"config.optim.when is read by the 'when' schedule, not {c.schedule!r}; pass "
                    "--config.optim.schedule=when")
  if len(c.betas) != 2 or not all(0.0 <= b < 1.0 for b in c.betas):
    raise UserError(f"config.optim.betas must be two numbers in [0, 1) (got {tuple(c.betas)}); pass e.g. "
                    "--config.optim.betas='(0.9, 0.999)' (ULMFiT's: (0.7, 0.99))")
  finetuning.validate(c)


def make_optimizer(c: ml_collections.ConfigDict, frozen: Collection[str] = (),
                   groups: finetuning.Groups = ()) -> optax.GradientTransformation:
  """clip_by_global_norm(clip) (none when clip is 0) then the named optimiser, with the lr injected so the host
  can change it.

  `frozen` names top-level parameters that never change, as torch's requires_grad=False: their gradient is
  zeroed before the clip (so the norm leaves it out) and weight decay skips them, so every optimiser's
  update of them is exactly 0 (Adam's moments stay 0; nt_asgd's average of a constant is that constant).
  With nothing frozen the optimiser is the reference's, state and all. `groups` (names per layer group, bottom
  first): for discriminative lrs or gradual unfreezing, each group's own optimiser (lm_jax/finetuning.py)."""
  is_frozen = lambda params: {name: name in frozen for name in params}
  is_trained = lambda params: {name: name not in frozen for name in params}
  update_at = lambda lr: OPTIMIZERS[c.name].build(c, lr, is_trained if frozen else None)

  def build(learning_rate: float, trainable: jax.Array | None = None) -> optax.GradientTransformation:
    grouped = trainable is not None
    update = (finetuning.by_group(update_at, learning_rate, trainable, groups, c) if grouped else
              update_at(learning_rate))
    update = optax.chain(clip_by_global_norm(c.clip), update) if c.clip else update
    update = optax.chain(finetuning.zero_frozen_groups(trainable, groups), update) if grouped else update
    return optax.chain(optax.masked(optax.set_to_zero(), is_frozen), update) if frozen else update

  if not finetuning.uses_groups(c):
    return optax.inject_hyperparams(build)(learning_rate=c.lr)
  return optax.inject_hyperparams(build)(learning_rate=c.lr, trainable=np.ones(len(groups), np.float32))


def update_with_lr_scale(optimizer: optax.GradientTransformation, grads, opt_state: optax.InjectHyperparamsState,
                         params, lr_scale) -> tuple[Any, optax.InjectHyperparamsState]:
  """The optimiser's update at its lr times `lr_scale` for this step only (AWD-LSTM's variable-BPTT scaling, STLR's
  per-step factor); the state keeps the epoch's lr."""
  lr = opt_state.hyperparams["learning_rate"]
  updates, opt_state = optimizer.update(grads, with_learning_rate(opt_state, lr * lr_scale), params)
  return updates, with_learning_rate(opt_state, lr)


def with_learning_rate(opt_state: optax.InjectHyperparamsState, lr: float) -> optax.InjectHyperparamsState:
  """The same optimiser state with a new learning rate (the hyperparameter lives in the state)."""
  return opt_state._replace(hyperparams=dict(opt_state.hyperparams, learning_rate=lr))


def _is_asgd(node: Any) -> bool:
  return isinstance(node, AveragedSGDState)


def _asgd_states(opt_state: optax.OptState) -> list[AveragedSGDState]:
  """The averaged-SGD states inside an optimiser state, found by their type."""
  return [node for node in jax.tree.leaves(opt_state, is_leaf=_is_asgd) if _is_asgd(node)]


def is_averaging(opt_state: optax.OptState) -> bool:
  """Whether an nt_asgd state has switched to averaging (False for every other optimiser)."""
  return any(bool(jax.device_get(state.averaging)) for state in _asgd_states(opt_state))


def start_averaging(opt_state: optax.OptState) -> optax.OptState:
  """The nt_asgd state switched to averaging from its next step on."""
  switch = lambda node: node._replace(averaging=jnp.ones_like(node.averaging)) if _is_asgd(node) else node
  return jax.tree.map(switch, opt_state, is_leaf=_is_asgd)


def evaluation_params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
  """What validation, the best checkpoint and the test use: the averaged iterates once nt_asgd averages."""
  return _asgd_states(opt_state)[0].ax if is_averaging(opt_state) else params


def should_start_averaging(c: ml_collections.ConfigDict, val_history: list[float], val_loss: float) -> bool:
  """AWD-LSTM's non-monotone trigger: more than `nonmono` validations so far, and this one worse than the
  best of all but the last `nonmono` of them."""
  return len(val_history) > c.nonmono and val_loss > min(val_history[:-c.nonmono])


def initial_learning_rate(c: ml_collections.ConfigDict) -> float:
  """The lr of epoch 1, by the schedule too: decay_after with lr_decay_start 0 decays it already."""
  return SCHEDULES[c.schedule](c, c.lr, 0, True)  # as if an epoch 0 had ended, improving


def next_learning_rate(c: ml_collections.ConfigDict, lr: float, epoch: int, improved: bool) -> float:
  """The lr for epoch `epoch + 1` after epoch `epoch` (1-based) ended, by config.optim.schedule."""
  return SCHEDULES[c.schedule](c, lr, epoch, improved)


class EpochEnd(NamedTuple):
  """What an optimiser's epoch policy decided after an epoch's validation."""
  opt_state: optax.OptState
  lr: float            # of the next epoch
  policy_state: dict   # the policy's own record, JSON (kept in the checkpoint's metadata)
  stop: bool           # training is done (fine-tuning's stop)
  note: str | None     # a log line saying what changed


class EpochPolicy:
  """What a plain optimiser does between epochs: the next lr by config.optim.schedule; the iterates are
  evaluated; fine-tuning starts from the other run's parameters and a fresh optimiser state."""

  def start_finetuning(self, opt_state: optax.OptState) -> optax.OptState:
    return opt_state

  def evaluation_params(self, opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    return params

  def end_epoch(self, c: ml_collections.ConfigDict, opt_state: optax.OptState, policy_state: dict, lr: float,
                epoch: int, val_loss: float, improved: bool, finetuning: bool) -> EpochEnd:
    return EpochEnd(opt_state, next_learning_rate(c, lr, epoch, improved), policy_state, False, None)


class NTASGDPolicy(EpochPolicy):
  """AWD-LSTM's: start averaging (at the initial lr, as the reference's new ASGD optimiser) when validation is
  worse than the best of all but the last `nonmono`; evaluate the average from then on, and keep the lr.
  Fine-tuning (finetune.py) averages from the first step and stops at the trigger. policy_state holds the
  validation losses the trigger reads."""

  def start_finetuning(self, opt_state: optax.OptState) -> optax.OptState:
    return start_averaging(opt_state)

  def evaluation_params(self, opt_state: optax.OptState, params: optax.Params) -> optax.Params:
    return evaluation_params(opt_state, params)

  def end_epoch(self, c: ml_collections.ConfigDict, opt_state: optax.OptState, policy_state: dict, lr: float,
                epoch: int, val_loss: float, improved: bool, finetuning: bool) -> EpochEnd:
    averaging, history = is_averaging(opt_state), list(policy_state.get("val_history", []))
    stop, note = False, None
    if not averaging or finetuning:
      if should_start_averaging(c, history, val_loss):
        if averaging:
          stop, note = True, "| fine-tuning done: validation stopped improving"
        else:
          opt_state, lr = start_averaging(opt_state), c.lr
          note = f"| switching to averaged SGD (lr {lr:g})"
      history.append(val_loss)
    if not averaging:  # as the reference: once averaging, the lr stays
      lr = next_learning_rate(c, lr, epoch, improved)
    return EpochEnd(opt_state, lr, {"val_history": history}, stop, note)


class Optimizer(NamedTuple):
  # (optim config, lr, weight decay mask) -> the update that follows the clip
  build: Callable[[ml_collections.ConfigDict, float, DecayMask], optax.GradientTransformation]
  policy: EpochPolicy = EpochPolicy()  # stateless: one instance serves every optimiser that uses it


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(lambda c, lr, decay_mask: _with_l2(c, optax.sgd(lr), decay_mask)),
    "nt_asgd": Optimizer(lambda c, lr, decay_mask: _with_l2(c, averaged_sgd(lr), decay_mask), NTASGDPolicy()),
    # torch.optim.Adam's weight decay, as AWD-LSTM's
    "adam": Optimizer(lambda c, lr, decay_mask: _with_l2(c, optax.adam(lr, *c.betas), decay_mask)),
    "adamw": Optimizer(lambda c, lr, mask: optax.adamw(lr, *c.betas, weight_decay=c.weight_decay, mask=mask)),
    # deepmind/lamb's 'rmsprop' (the Mogrifier LSTM's optimiser): TF's Adam with beta1 0, beta2 0.999, epsilon 1e-8
    "rmsprop": Optimizer(lambda c, lr, decay_mask: _with_l2(c, optax.adam(lr, b1=0.0, b2=0.999, eps=1e-8), decay_mask)),
    # torch.optim.Adadelta's (Kim 2014's rho and eps; tests/test_classify_models.py checks it step for step)
    "adadelta": Optimizer(lambda c, lr, decay_mask: _with_l2(c, optax.adadelta(lr, rho=0.95, eps=1e-6), decay_mask)),
}


def policy(c: ml_collections.ConfigDict) -> EpochPolicy:
  """config.optim's optimiser's epoch policy."""
  return OPTIMIZERS[c.name].policy


def perplexity(mean_nll: float) -> float:
  return math.exp(mean_nll) if mean_nll < 700.0 else math.inf  # exp overflows past ~709
