"""AWD-LSTM: the regularisers' masks are what they claim, variable BPTT follows the rule, and one window's
loss and gradients, and 20 steps across the NT-ASGD switch, equal a PyTorch AWD-LSTM built from torch.nn
parts (torch_reference/awd_lstm.py) with the same masks injected on both sides."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lm_jax import checkpoints, fast_random, lm_run, optim, steps
from lm_jax.config import reference_config, validate
from lm_jax.data.batching import VARIABLE_BPTT_MARGIN, Window, batchify, put_on_device, variable_windows
from lm_jax.errors import UserError
from lm_jax.loss import regularisers, window_loss
from lm_jax.models import awd_convert
from lm_jax.models.rnn_model import RNNModel
from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config

V, B = 60, 4
AWD_DROPOUT = dict(locked_dropout=True, dropout=0.4, dropouti=0.65, dropouth=0.3, dropoute=0.1, wdrop=0.5)


def awd_model(**overrides) -> RNNModel:
  """3 layers, 14 units inside, the last of emsize 10 (tied): AWD-LSTM's shape, small."""
  return RNNModel(vocab_size=V, cell="lstm", emsize=10, nhid=14, nlayers=3, tied=True,
                  **{**AWD_DROPOUT, **overrides})


def binomial_ok(kept: int, n: int, p_keep: float) -> bool:
  return abs(kept - n * p_keep) < 5 * math.sqrt(n * p_keep * (1 - p_keep)) + 1


# --- the masks -----------------------------------------------------------------------------------


def test_layer_sizes_follow_awd_lstm_and_tying_works_with_nhid_not_emsize():
  model = awd_model()
  params = model.init_params(0)
  assert model.sizes == (14, 14, 10)
  assert params["layer_0_w_ih"].shape == (10, 56) and params["layer_2_w_hh"].shape == (10, 40)
  assert "decoder_weight" not in params
  assert [tuple(s.shape for s in layer) for layer in model.init_carry(3)] == [((3, 14), (3, 14))] * 2 + [((3, 10),) * 2]


def test_locked_masks_are_constant_over_time_and_differ_per_column():
  model = awd_model(dropoute=0.0, wdrop=0.0)
  params = model.init_params(1)
  tokens_TxB = jnp.asarray(np.random.default_rng(0).integers(V, size=(9, 64)))
  out = model.features(params, tokens_TxB, model.init_carry(64), train=True, rng=jax.random.PRNGKey(5))
  dropped_BxH = np.all(np.asarray(out.features_TxBxH) == 0.0, axis=0)  # dropped units are 0 at every step
  ever_zero_BxH = np.any(np.asarray(out.features_TxBxH) == 0.0, axis=0)
  np.testing.assert_array_equal(dropped_BxH, ever_zero_BxH)  # ... and no unit is dropped at some steps only
  assert binomial_ok(int((~dropped_BxH).sum()), dropped_BxH.size, 1 - 0.4)
  assert len({row.tobytes() for row in dropped_BxH}) > 32  # columns draw their own masks
  kept = np.asarray(out.features_TxBxH)[:, ~dropped_BxH]
  raw = np.asarray(out.aux["top_raw_TxBxH"])[:, ~dropped_BxH]
  np.testing.assert_allclose(kept, raw / (1 - 0.4), rtol=1e-6)  # scaled by 1/(1-p)


def test_embedding_dropout_drops_whole_word_types_at_its_rate():
  model = dataclasses.replace(awd_model(), vocab_size=5000, tied=False)
  mask_V = np.asarray(model.dropout_masks(jax.random.PRNGKey(2), B)["embedding_V"])
  assert set(np.unique(mask_V)) <= {0.0, np.float32(1 / 0.9)}
  assert binomial_ok(int((mask_V > 0).sum()), 5000, 0.9)
  # In the forward pass: a dropped word's embedding row gets no gradient wherever it occurs; a kept one does.
  params = model.init_params(0)
  tokens_TxB = jnp.asarray(np.random.default_rng(1).integers(60, size=(30, 8)))  # 60 words, each seen often
  features = lambda p: jnp.sum(model.features(p, tokens_TxB, model.init_carry(8), train=True,
                                              masks={"embedding_V": jnp.asarray(mask_V)}).features_TxBxH)
  row_grads = np.abs(np.asarray(jax.grad(features)(params)["embedding"][:60])).sum(axis=1)
  seen = np.isin(np.arange(60), np.asarray(tokens_TxB))
  assert 0 < (mask_V[:60][seen] == 0).sum() < seen.sum()
  np.testing.assert_array_equal(row_grads[seen] == 0, mask_V[:60][seen] == 0)


def test_weight_drop_changes_per_window_never_at_evaluation_and_is_reproducible():
  model = awd_model()
  a = model.dropout_masks(jax.random.PRNGKey(0), B)
  b = model.dropout_masks(jax.random.PRNGKey(1), B)
  again = model.dropout_masks(jax.random.PRNGKey(0), B)
  for k, size in enumerate(model.sizes):
    w = np.asarray(a[f"w_hh_{k}"])
    assert w.shape == (size, 4 * size) and binomial_ok(int((w > 0).sum()), w.size, 0.5)
    assert not np.array_equal(w, b[f"w_hh_{k}"]) and np.array_equal(w, again[f"w_hh_{k}"])
  # Evaluation: no mask at all, so the model equals the same weights without any dropout.
  params = model.init_params(3)
  tokens_TxB = jnp.asarray(np.random.default_rng(2).integers(V, size=(6, B)))
  plain = dataclasses.replace(model, **{name: 0.0 for name in ("dropout", "dropouti", "dropouth", "dropoute", "wdrop")})
  np.testing.assert_array_equal(model.features(params, tokens_TxB, model.init_carry(B)).features_TxBxH,
                                plain.features(params, tokens_TxB, plain.init_carry(B)).features_TxBxH)
  # Two train steps of the real step draw different masks (fold_in of the step number).
  trained = model.features(params, tokens_TxB, model.init_carry(B), train=True, rng=jax.random.PRNGKey(7))
  retrained = model.features(params, tokens_TxB, model.init_carry(B), train=True, rng=jax.random.PRNGKey(7))
  np.testing.assert_array_equal(trained.features_TxBxH, retrained.features_TxBxH)


# --- variable BPTT -------------------------------------------------------------------------------


def normal_cdf(x: float) -> float:
  return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_variable_bptt_lengths_follow_the_rule_and_cover_every_token_once():
  bptt, rows = 70, 2_000_000
  windows = variable_windows(rows, bptt, np.random.default_rng(0))
  # Every input row 0..rows-2 exactly once, in order.
  assert windows[0][0] == 0 and all(s + n == s2 for (s, n, _), (s2, _, _) in zip(windows, windows[1:]))
  assert windows[-1][0] + windows[-1][1] == rows - 1
  seq_lens = np.rint(np.array([scale for _, _, scale in windows[:-1]]) * bptt).astype(int)
  counts = np.bincount(seq_lens, minlength=bptt + VARIABLE_BPTT_MARGIN + 30)
  # P(seq_len = s): max(5, int(x)), x ~ 0.95 N(70, 5) + 0.05 N(35, 5); int() truncates toward zero.
  def p(s: int) -> float:
    mix = lambda lo, hi: sum(w * (normal_cdf((hi - m) / 5) - normal_cdf((lo - m) / 5)) for w, m in ((0.95, 70), (0.05, 35)))
    return mix(-math.inf, 6) if s == 5 else mix(s, s + 1)
  expected = np.array([p(s) if s >= 5 else 0.0 for s in range(len(counts))]) * len(seq_lens)
  used = expected > 5  # the rarer lengths pooled into one bin, as a chi-square test wants
  observed_K = np.append(counts[used], counts[~used].sum())
  expected_K = np.append(expected[used], len(seq_lens) - expected[used].sum())
  chi2 = float(np.sum((observed_K - expected_K) ** 2 / expected_K))
  dof = len(observed_K) - 1
  assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)


def test_the_lr_scale_scales_the_step_and_one_program_serves_every_length():
  model = awd_model(**{name: 0.0 for name in AWD_DROPOUT if name != "locked_dropout"})
  sgd = optax_sgd_no_clip()
  step = steps.make_train_step(model, sgd, 8 + VARIABLE_BPTT_MARGIN)
  ids = np.random.default_rng(3).integers(V, size=B * 200).astype(np.int32)
  split = put_on_device(ids, B, 8 + VARIABLE_BPTT_MARGIN)
  params = model.init_params(0)

  def change(window: steps.WindowAt) -> dict:
    state = steps.TrainState(jax.tree.map(jnp.array, params), sgd.init(params), model.init_carry(B),
                             jax.random.PRNGKey(0), jnp.int32(0))
    new, _ = step(state, window, split.padded_TxB)
    return jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new.params, params)

  once, scaled = change(steps.WindowAt(0, 8, 1.0)), change(steps.WindowAt(0, 8, 0.37))
  for name in params:  # to float32 rounding of the parameters themselves (~3e-8 here)
    assert np.abs(once[name]).max() > 1e-5
    np.testing.assert_allclose(scaled[name], 0.37 * once[name], rtol=1e-3, atol=2e-7)
  for start, length, scale in variable_windows(60, 8, np.random.default_rng(1)):
    change(steps.WindowAt(start, length, scale))
  assert step.compiled._cache_size() == 1


def test_static_steps_round_lengths_up_to_the_bucket_at_most_max_len():
  assert [steps.static_steps(n, 28, 0) for n in (1, 8, 28)] == [28, 28, 28]
  assert [steps.static_steps(n, 28, 5) for n in (1, 5, 6, 10, 11, 24, 25, 26, 28)] == [5, 5, 10, 10, 15, 25, 25, 28, 28]


def test_windows_in_length_buckets_train_as_the_one_max_len_program_does():
  """Every AWD dropout and AR/TAR on: the bucketed program (a window runs at its length rounded up to 5) and the
  one 28-step program give the same losses, carries and parameters over 12 windows of variable length; one
  program per bucket met."""
  model = awd_model()
  config = awd_config()
  max_len = 8 + VARIABLE_BPTT_MARGIN
  ids = np.random.default_rng(3).integers(V, size=B * 200).astype(np.int32)
  split = put_on_device(ids, B, max_len)
  optimizer = optim.make_optimizer(config.optim)
  windows = [steps.WindowAt(*w) for w in variable_windows(200, 8, np.random.default_rng(4))[:12]]
  buckets = {steps.static_steps(w.length, max_len, config.bptt_bucket) for w in windows}
  assert len(buckets) > 1 and max(buckets) < max_len

  def train(length_bucket: int):
    step = steps.make_train_step(model, optimizer, max_len, terms=regularisers(config), length_bucket=length_bucket)
    state = steps.TrainState.create(model, optimizer, 0, B)
    losses = []
    for window in windows:
      state, metrics = step(state, window, split.padded_TxB)
      losses.append(float(metrics["loss"]))
    return losses, state, step.compiled._cache_size()

  one_losses, one_state, one_programs = train(0)
  bucket_losses, bucket_state, bucket_programs = train(config.bptt_bucket)
  assert (one_programs, bucket_programs) == (1, len(buckets))
  np.testing.assert_allclose(bucket_losses, one_losses, rtol=1e-6)
  for name in ("params", "carry"):
    for a, b in zip(jax.tree.leaves(getattr(bucket_state, name)), jax.tree.leaves(getattr(one_state, name))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def optax_sgd_no_clip():
  import optax
  return optax.inject_hyperparams(optax.sgd)(learning_rate=100.0)  # updates well above float32 rounding


# --- PyTorch fidelity --------------------------------------------------------------------------


def awd_config(**overrides) -> ml_collections.ConfigDict:
  c = reference_config()
  c.update(ar_alpha=2.0, tar_beta=1.0)
  c.optim.update(name="nt_asgd", lr=2.0, clip=0.25, weight_decay=1e-3, schedule="when")
  for key, value in overrides.items():
    node, _, field = key.rpartition(".")
    (c[node] if node else c)[field] = value
  return c


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture
def torch_awd():
  torch = pytest.importorskip("torch", reason="the fidelity tests compare with PyTorch: pip install 'lm_jax[torch]'")
  from torch_reference import awd_lstm
  torch.manual_seed(0)
  reference = awd_lstm.AWDRNNModel(V, 10, 14, 3, tied=True)
  for p in reference.parameters():  # biases too, so that a misplaced tensor shows
    torch.nn.init.uniform_(p, -0.3, 0.3)
  state_dict = {name: t.detach().numpy().copy() for name, t in reference.state_dict().items()}
  imported, params = awd_convert.import_state_dict(state_dict)
  return torch, awd_lstm, reference, dataclasses.replace(imported, **AWD_DROPOUT), params


def step_masks(model: RNNModel, rng: jax.Array, step: int) -> dict:
  """The masks the real train step draws at `step` on device 0 (steps.py, then RNNModel.features), in the form of
  random draws it uses (fast_random.py)."""
  step_rng = jax.random.fold_in(jax.random.fold_in(rng, step), 0)
  return fast_random.traced_with_fast_random(model.dropout_masks)(jax.random.fold_in(step_rng, 1), B)


def test_awd_checkpoint_round_trip_is_bitwise(torch_awd):
  torch, _, reference, model, params = torch_awd
  exported = awd_convert.export_state_dict(model, params)
  expected = reference.state_dict()
  assert list(exported) == list(expected)  # the reference's names, rnns.K.module.weight_hh_l0_raw included
  for name, tensor in expected.items():
    assert np.array_equal(exported[name], tensor.numpy()), name


def test_one_window_loss_and_every_gradient_match_torch(torch_awd):
  torch, awd_lstm, reference, model, params = torch_awd
  config = awd_config()
  ids = np.random.default_rng(4).integers(V, size=(8, B)).astype(np.int32)
  window = Window(jnp.asarray(ids[:-1]), jnp.asarray(ids[1:]), jnp.ones(7, bool))
  rng = jax.random.PRNGKey(9)
  masks = model.dropout_masks(jax.random.fold_in(rng, 1), B)  # what window_loss's features draw from rng
  carry = model.init_carry(B)
  loss_of = lambda p: window_loss(model, p, carry, window, train=True, rng=rng, terms=regularisers(config))[0]
  loss, grads = jax.value_and_grad(loss_of)(params)

  inputs, targets = torch.from_numpy(ids[:-1]).long(), torch.from_numpy(ids[1:]).long()
  expected_loss, _, _ = awd_lstm.window_loss(reference, inputs, targets, reference.init_hidden(B),
                                             awd_lstm.masks_from_jax(masks), config.ar_alpha, config.tar_beta)
  expected_loss.backward()
  torch_grads = {name: p.grad.numpy() for name, p in reference.named_parameters()}
  torch_grads["decoder.weight"] = torch_grads["encoder.weight"]  # tied: one tensor, one gradient
  _, expected_grads = awd_convert.import_state_dict({n: torch_grads[n] for n in reference.state_dict()})
  assert rel_err(loss, expected_loss.item()) < 1e-5
  errors = {name: rel_err(grads[name], expected_grads[name]) for name in params}
  assert max(errors.values()) < 1e-5, errors
  assert abs(float(loss) - float(window_loss(model, params, carry, window, train=True, rng=rng)[0])) > 0.01  # AR/TAR count


def test_twenty_nt_asgd_steps_across_the_switch_match_torch(torch_awd):
  """8 SGD steps, the switch to averaging, 12 averaged steps with an lr division after 4 of them; every
  window of variable length with its lr scale; weight decay, clip, AR, TAR and all the masks on."""
  torch, awd_lstm, reference, model, params = torch_awd
  config = awd_config()
  bptt, max_len = 8, 8 + VARIABLE_BPTT_MARGIN
  ids = np.random.default_rng(5).integers(V, size=B * 200).astype(np.int32)
  windows = variable_windows(200, bptt, np.random.default_rng(6))[:20]
  split = put_on_device(ids, B, max_len)
  optimizer = optim.make_optimizer(config.optim)
  # As the trainer runs them: each window at its length rounded up to the bucket.
  train_step = steps.make_train_step(model, optimizer, max_len, terms=regularisers(config),
                                     length_bucket=config.bptt_bucket)
  state = steps.TrainState(params, optimizer.init(params), model.init_carry(B), jax.random.PRNGKey(11), jnp.int32(0))

  data_TxB = torch.from_numpy(batchify(ids, B)).long()
  torch_opt = torch.optim.SGD(reference.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
  hidden = reference.init_hidden(B)
  losses, expected_losses = [], []
  for step, (start, length, scale) in enumerate(windows):
    if step == 8:
      state = state._replace(opt_state=optim.start_averaging(state.opt_state))
      torch_opt = torch.optim.ASGD(reference.parameters(), lr=config.optim.lr, t0=0, lambd=0.0,
                                   weight_decay=config.optim.weight_decay)
    if step == 12:  # the 'when' schedule, after the switch as the reference allows it on the switch epoch
      state = state._replace(opt_state=optim.with_learning_rate(state.opt_state, config.optim.lr / 10))
      torch_opt.param_groups[0]["lr"] /= 10
    masks = awd_lstm.masks_from_jax(step_masks(model, jax.random.PRNGKey(11), step))
    state, metrics = train_step(state, steps.WindowAt(start, length, scale), split.padded_TxB)
    losses.append(float(metrics["loss"]))
    loss, hidden = awd_lstm.train_step(reference, torch_opt, data_TxB[start:start + length],
                                       data_TxB[start + 1:start + 1 + length], hidden, masks, config.ar_alpha,
                                       config.tar_beta, config.optim.clip, scale)
    expected_losses.append(loss)
  assert len({length for _, length, _ in windows}) > 3  # the windows did vary
  np.testing.assert_allclose(losses, expected_losses, atol=1e-4)
  final = awd_convert.export_state_dict(model, state.params)
  averaged = awd_convert.export_state_dict(model, optim.evaluation_params(state.opt_state, state.params))
  expected_final = {n: t.numpy() for n, t in reference.state_dict().items()}
  expected_ax = awd_lstm.averaged_params(reference, torch_opt)
  expected_ax["decoder.weight"] = expected_ax["encoder.weight"]
  assert max(rel_err(final[n], expected_final[n]) for n in final) < 1e-4
  assert max(rel_err(averaged[n], expected_ax[n].numpy()) for n in averaged) < 1e-4
  assert max(rel_err(averaged[n], final[n]) for n in final) > 1e-3  # the average is not the last iterate


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ({"model.dropouth": 1.0, "model.locked_dropout": True}, r"config.model.dropouth must be in \[0, 1\)"),
    ({"model.wdrop": -0.1}, r"config.model.wdrop must be in \[0, 1\)"),
    ({"model.dropouti": 0.3}, "is AWD-LSTM's locked dropout; pass --config.model.locked_dropout=True"),
    ({"optim.name": "nt_asgd", "optim.nonmono": 0}, "config.optim.nonmono must be >= 1"),
    ({"optim.schedule": "when", "optim.when": (0,)}, "config.optim.when must list epochs >= 1"),
    ({"optim.schedule": "when", "optim.when": (9,)}, "config.optim.when lists epoch 9, past the last epoch 2"),
])
def test_bad_awd_settings_are_one_line_and_write_nothing(tmp_path, override, message):
  with pytest.raises(UserError, match=message):
    train_and_evaluate(tiny_config(**override), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_an_awd_checkpoint_whose_shapes_do_not_match_is_one_line(torch_awd):
  torch, _, reference, _, _ = torch_awd
  state_dict = {name: t.numpy() for name, t in reference.state_dict().items()}
  state_dict["rnns.1.module.weight_ih_l0"] = np.zeros((56, 9), np.float32)
  with pytest.raises(UserError, match=r"^the checkpoint's rnns.1.module.weight_ih_l0 is \[56, 9\], not \[56, 14\]"):
    awd_convert.import_state_dict(state_dict)


def test_a_model_config_written_before_the_awd_fields_loads_with_their_defaults():
  """Checkpoints keep their config: one from before these fields existed still names a model."""
  from lm_jax.models.registry import model_from_config
  old = ml_collections.ConfigDict({"kind": "rnn", "cell": "gru", "emsize": 8, "nhid": 8, "nlayers": 2, "dropout": 0.1,
                                   "tied": False, "init_range": 0.1, "unroll": 1})
  model = model_from_config(old, 30)
  assert model == RNNModel(vocab_size=30, cell="gru", emsize=8, nhid=8, nlayers=2, dropout=0.1)
  assert (model.locked_dropout, model.wdrop, model.dropoute) == (False, 0.0, 0.0)


def awd_tiny(**overrides) -> ml_collections.ConfigDict:
  """The AWD recipe on the tiny synthetic corpus, switching to averaging early (nonmono 1); every window in one
  program (bptt_bucket 0), so that each run compiles one train step."""
  c = tiny_config(**{"epochs": 4, "bptt": 8, "variable_bptt": True, "bptt_bucket": 0, "ar_alpha": 2.0,
                     "tar_beta": 1.0, **overrides})
  c.model.update(nlayers=2, emsize=12, nhid=16, tied=True, **AWD_DROPOUT)
  c.optim.update(name="nt_asgd", lr=30.0, weight_decay=1.2e-6, schedule="when", nonmono=1)
  return c


@pytest.mark.parametrize("bptt_bucket, programs", [(0, [28] * 9), (5, [5, 5, 10, 15, 15, 20, 20, 25, 28])])
def test_the_config_bptt_bucket_sets_the_program_each_window_length_runs(tmp_path, bptt_bucket, programs):
  """Variable BPTT at bptt 8 cuts windows at 28 steps; config.bptt_bucket rounds a window's length up to its
  multiple (capped at 28), or with 0 runs every window at 28."""
  run = lm_run.setup_run(awd_tiny(bptt_bucket=bptt_bucket), str(tmp_path))
  assert [run.train_step.steps_for(length) for length in (1, 5, 10, 11, 14, 16, 20, 21, 28)] == programs


def test_a_negative_bptt_bucket_is_refused_with_its_fix():
  with pytest.raises(UserError, match=r"config.bptt_bucket must be >= 0 \(got -5\); pass --config.bptt_bucket=5"):
    validate(awd_tiny(bptt_bucket=-5))


def test_nt_asgd_resumes_exactly_across_the_switch_and_fine_tuning_starts_from_the_best_model(tmp_path, capsys):
  import json

  from lm_jax import trained

  straight = train_and_evaluate(awd_tiny(), str(tmp_path / "straight"))
  log = capsys.readouterr().out
  assert "switching to averaged SGD" in log and "end of epoch   2" in log.split("switching")[0]  # after epoch 2+
  with open(tmp_path / "straight" / "metrics.jsonl") as f:
    epochs = [json.loads(line) for line in f if '"epoch"' in line and "valid_loss" in line]
  assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
  train_and_evaluate(awd_tiny(epochs=2), str(tmp_path / "resumed"))
  resumed = train_and_evaluate(awd_tiny(), str(tmp_path / "resumed"), resume=True)
  assert resumed == straight  # the averaging state and the validation history are in the checkpoint
  jax.tree.map(np.testing.assert_array_equal, trained.load(str(tmp_path / "straight")).params,
               trained.load(str(tmp_path / "resumed")).params)

  # Fine-tuning starts from the source's best model and its validation loss: never ends worse than that.
  source = trained.load(str(tmp_path / "straight"))
  finetuned = train_and_evaluate(awd_tiny(epochs=2, finetune_from=str(tmp_path / "straight")),
                                 str(tmp_path / "finetune"))
  assert finetuned["valid_loss"] <= straight["valid_loss"] + 1e-9
  start = trained.load(str(tmp_path / "finetune"), checkpoints.BEST)
  if finetuned["valid_loss"] == straight["valid_loss"]:  # no epoch beat it: the best is the model it started from
    jax.tree.map(np.testing.assert_array_equal, start.params, source.params)


def test_adam_with_l2_weight_decay_matches_torch(torch_awd):
  """`optim.name = "adam"`: torch.optim.Adam(weight_decay) as AWD-LSTM's --optimizer adam, masks on."""
  torch, awd_lstm, reference, model, params = torch_awd
  config = awd_config(**{"optim.name": "adam", "optim.lr": 1e-3, "optim.schedule": "plateau",
                         "optim.weight_decay": 0.1})  # large enough that decoupled decay would not pass
  ids = np.random.default_rng(8).integers(V, size=B * 60).astype(np.int32)
  split = put_on_device(ids, B, 8)
  optimizer = optim.make_optimizer(config.optim)
  train_step = steps.make_train_step(model, optimizer, 8, terms=regularisers(config))
  state = steps.TrainState(params, optimizer.init(params), model.init_carry(B), jax.random.PRNGKey(3), jnp.int32(0))
  data_TxB = torch.from_numpy(batchify(ids, B)).long()
  torch_opt = torch.optim.Adam(reference.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
  hidden = reference.init_hidden(B)
  for step, start in enumerate(range(0, 48, 8)):
    masks = awd_lstm.masks_from_jax(step_masks(model, jax.random.PRNGKey(3), step))
    state, metrics = train_step(state, steps.WindowAt(start, 8), split.padded_TxB)
    loss, hidden = awd_lstm.train_step(reference, torch_opt, data_TxB[start:start + 8], data_TxB[start + 1:start + 9],
                                       hidden, masks, config.ar_alpha, config.tar_beta, config.optim.clip)
    assert abs(float(metrics["loss"]) - loss) < 1e-4
  final = awd_convert.export_state_dict(model, state.params)
  assert max(rel_err(final[n], t.numpy()) for n, t in reference.state_dict().items()) < 1e-4
