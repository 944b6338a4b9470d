"""train_and_evaluate end to end on the synthetic corpus: learning reaches the true-source floor,
checkpoints resume exactly, divergence stops cleanly, the lr rules follow the reference."""

from __future__ import annotations

import json
import math
import os

import jax
import ml_collections
import numpy as np
import pytest

from lm_jax import checkpoints, lm_run, metrics, optim, parallel, train, trained
from lm_jax.data.sources import load_corpus
from lm_jax.metrics import METRICS_FILE
from lm_jax.models.registry import model_from_config
from lm_jax.errors import UserError
from lm_jax.steps import TrainState
from lm_jax.runner import Preempted, Progress, TrainingDiverged
from lm_jax.train import train_and_evaluate
from tests.conftest import in_optimised_process, tiny_config

def latest_params(workdir: str, c) -> dict:
  params = model_from_config(c.model, c.data.synthetic.vocab_size).init_params(0)
  like = {"params": params, "opt_state": optim.make_optimizer(c.optim).init(params)}
  return checkpoints.restore(workdir, checkpoints.LATEST, like)[0]["params"]


# A short run (~20 s on 2 cores; 5 epochs end about 9% above the floor) must come this close to the floor no model
# can beat in expectation.
FLOOR_MARGIN = 0.15


def floor_run(workdir: str) -> dict:
  c = tiny_config(**{"data.synthetic.vocab_size": 500, "data.synthetic.num_classes": 12})
  c.data.synthetic.update(train_tokens=150_000, valid_tokens=10_000, test_tokens=10_000)
  c.model.update(emsize=64, nhid=128)
  c.optim.update(name="adamw", lr=3e-3, clip=1.0, schedule="decay_after", lr_decay=2.0, lr_decay_start=3)
  c.update(epochs=5, batch_size=32, bptt=35)
  return train_and_evaluate(c, workdir)


def test_short_training_run_gets_within_margin_of_the_true_source_floor(tmp_path):
  results = in_optimised_process("tests.test_training:floor_run", workdir=str(tmp_path))
  floor_ppl = results["valid_floor_ppl"]
  assert results["valid_ppl"] >= floor_ppl * 0.98  # below the floor would mean a broken metric or leak
  assert results["valid_ppl"] <= floor_ppl * (1 + FLOOR_MARGIN), results
  assert results["test_ppl"] <= results["test_floor_ppl"] * (1 + FLOOR_MARGIN), results


def test_resuming_after_an_epoch_gives_the_uninterrupted_run_exactly(tmp_path):
  c = tiny_config(**{"model.dropout": 0.3})
  straight = train_and_evaluate(c, str(tmp_path / "straight"))
  c1 = tiny_config(**{"model.dropout": 0.3, "epochs": 1})
  train_and_evaluate(c1, str(tmp_path / "resumed"))
  resumed = train_and_evaluate(c, str(tmp_path / "resumed"), resume=True)
  assert resumed == straight
  a = latest_params(str(tmp_path / "straight"), c)
  b = latest_params(str(tmp_path / "resumed"), c)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  with open(tmp_path / "resumed" / "metrics.jsonl") as f:
    assert [json.loads(line)["epoch"] for line in f if "valid_loss" in line and "epoch" in line] == [1, 2]


def test_a_run_recorded_before_newer_config_fields_existed_resumes(tmp_path):
  train_and_evaluate(tiny_config(epochs=1), str(tmp_path))
  with open(tmp_path / "config.json") as f:
    recorded = json.load(f)
  del recorded["model"]["kind"], recorded["variable_bptt"]  # as an older lm_jax wrote it
  with open(tmp_path / "config.json", "w") as f:
    json.dump(recorded, f)
  train_and_evaluate(tiny_config(), str(tmp_path), resume=True)
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["epoch"] for line in f if "valid_loss" in line and "epoch" in line] == [1, 2]


def test_an_epoch_trained_in_pieces_with_train_windows_is_the_epoch_in_one_call(tmp_path):
  # train_windows over consecutive slices of the epoch's windows (the whole-loop benchmark's timing) then the
  # rest through train_epoch equals train_epoch over the whole epoch: state, logged steps, loss sum.
  c = tiny_config(**{"model.dropout": 0.3, "log_interval": 40})  # 150 windows, logs after 40, 80, 120, 150
  run = lm_run.setup_run(c, str(tmp_path))

  def epoch(pieces: list[int]) -> tuple[TrainState, list[int], float]:
    state, progress = lm_run.start(run, resuming=False)
    run.report.open_metrics(str(tmp_path), resumed_at=None)
    windows = lm_run.epoch_windows(run, 1)
    with parallel.StopSignal() as stop:
      for until in pieces:
        state, progress = train.train_windows(run, state, progress, windows[progress.batch:until], stop,
                                              epoch_length=len(windows))
        assert progress.batch == progress.step == until
      state, progress = train.train_epoch(run, state, progress, stop)
      assert progress.batch == progress.step == 150
    run.report.close()
    with open(tmp_path / METRICS_FILE) as f:
      logged = [json.loads(line)["step"] for line in f]
    os.remove(tmp_path / METRICS_FILE)
    return state, logged, progress.train_loss_sum

  whole, whole_logged, whole_loss_sum = epoch([])
  split, split_logged, split_loss_sum = epoch([55, 81])  # windows 41-55 and 81 are not logged at the stops
  jax.tree.map(np.testing.assert_array_equal, whole, split)
  assert whole_logged == split_logged == [40, 80, 120, 150]
  assert split_loss_sum == whole_loss_sum


def test_epoch_record_holds_the_mean_of_every_window_across_a_mid_interval_stop_and_counts_tokens_and_parameters(
    tmp_path, monkeypatch):
  c = tiny_config(epochs=1, log_interval=1)  # every window's loss is a record of its own
  train_and_evaluate(c, str(tmp_path / "straight"))
  records = metrics.read_records(str(tmp_path / "straight"))
  window_losses = np.array([r["train_loss"] for r in records if "train_loss" in r], np.float64)
  [epoch] = [r for r in records if "epoch" in r]
  assert len(window_losses) == 150
  assert epoch["epoch_train_loss"] == pytest.approx(window_losses.mean(), rel=1e-12)
  assert epoch["epoch_train_ppl"] == pytest.approx(math.exp(window_losses.mean()), rel=1e-12)
  ids = load_corpus(c.data, training=True).ids["train"]
  rows = len(ids) // c.batch_size
  assert epoch["tokens_per_second"] * epoch["epoch_seconds"] == pytest.approx((rows - 1) * c.batch_size, rel=1e-9)
  V, E, H = len(load_corpus(c.data).vocab), c.model.emsize, c.model.nhid
  lstm = 4 * H * E + 4 * H * H + 2 * 4 * H  # W_ih, W_hh, b_ih, b_hh
  assert epoch["num_params"] == V * E + lstm + H * V + V

  # Stopped at window 37 with no window logged yet (one log line per epoch): the checkpoint holds their sum.
  c = tiny_config(epochs=1, log_interval=1000, checkpoint_every=0)
  monkeypatch.setattr(parallel.StopSignal, "reached", lambda self, step: step == 37)
  with pytest.raises(Preempted):
    train_and_evaluate(c, str(tmp_path / "resumed"))
  monkeypatch.undo()
  train_and_evaluate(c, str(tmp_path / "resumed"), resume=True)
  [resumed] = [r for r in metrics.read_records(str(tmp_path / "resumed")) if "epoch" in r]
  assert resumed["epoch_train_loss"] == epoch["epoch_train_loss"]


def test_progress_reads_the_metadata_of_checkpoints_written_before_its_fields_were_renamed():
  old = {"lr": 30.0, "epochs_done": 3, "window": 17, "step": 420, "best_val_loss": 4.5, "train_loss_sum": 70.25,
         "val_history": [5.0, 4.5, 4.75], "converged": True}
  assert Progress.from_meta(old) == Progress(lr=30.0, epochs_done=3, batch=17, step=420, best_val_loss=4.5,
                                             train_loss_sum=70.25, policy={"val_history": [5.0, 4.5, 4.75]},
                                             stopped=True)
  assert Progress.from_meta(Progress(lr=1.0, batch=3, policy={"a": [1.0]}).as_meta()) == Progress(
      lr=1.0, batch=3, policy={"a": [1.0]})


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  monkeypatch.setattr(optim, "next_learning_rate", lambda *args: math.nan)  # poison epoch 2
  with pytest.raises(TrainingDiverged, match=r"training loss at epoch 2, batch \d+ became (nan|inf).*lower --config.optim.lr"):
    train_and_evaluate(tiny_config(epochs=3), workdir)
  meta = checkpoints.restore_meta(workdir, checkpoints.LATEST)
  assert (meta["epochs_done"], meta["batch"]) == (1, 0)  # the end of epoch 1, nothing of epoch 2
  kept = latest_params(workdir, tiny_config())
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(kept))


def test_a_workdir_holding_another_run_is_never_overwritten(tmp_path):
  workdir = str(tmp_path)
  train_and_evaluate(tiny_config(epochs=1), workdir)
  before = {p: os.path.getmtime(os.path.join(r, p)) for r, _, files in os.walk(workdir) for p in files}
  with pytest.raises(UserError, match="holds a run of a different config .model.emsize: 16 -> 32; model.nhid: 16 -> 32"):
    train_and_evaluate(tiny_config(**{"model.nhid": 32, "model.emsize": 32}), workdir, resume=True)
  with pytest.raises(UserError, match="already holds a run; pass --resume to continue it, --overwrite"):
    train_and_evaluate(tiny_config(epochs=1), workdir)
  after = {p: os.path.getmtime(os.path.join(r, p)) for r, _, files in os.walk(workdir) for p in files}
  assert before == after
  train_and_evaluate(tiny_config(**{"model.nhid": 32, "model.emsize": 32, "epochs": 1}), workdir, overwrite=True)
  assert trained.load(workdir).config.model.nhid == 32


def test_bad_config_fails_before_anything_is_written(tmp_path):
  for override, message in [({"bptt": 0}, "config.bptt must be > 0"), ({"batch_size": -1}, "config.batch_size must be > 0"),
                            ({"epochs": 0}, "config.epochs must be > 0"), ({"model.dropout": 1.0}, r"dropout must be in \[0, 1\)"),
                            ({"model.cell": "lstn"}, "unknown cell 'lstn'; use one of lstm, gru, rnn_tanh, rnn_relu"),
                            ({"model.wdrop": 1.0}, r"config.model.wdrop must be in \[0, 1\)")]:
    with pytest.raises(UserError, match=message):
      train_and_evaluate(tiny_config(**override), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("override, message", [
    ({"batch_size": 8000}, r"the train split has \d+ tokens, too few for batch size 8000"),
    ({"eval_batch_size": 1500}, r"the valid split has \d+ tokens, too few for batch size 1500"),
])
def test_data_too_short_for_a_batch_fails_before_anything_is_written(tmp_path, override, message):
  with pytest.raises(UserError, match=message):
    train_and_evaluate(tiny_config(**override), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_resuming_on_other_data_leaves_the_run_untouched(tmp_path):
  """The checkpoint is checked against the data before the workdir is claimed: config.json (here with a new
  `epochs`) and the metrics stay as the run left them."""
  data, workdir = tmp_path / "data", str(tmp_path / "run")
  data.mkdir()
  for split in ("train", "valid"):
    (data / f"{split}.txt").write_text("the cat sat on the mat\n" * 40)
  (data / "test.txt").write_text("a bird sat on the mat\n" * 40)
  c = tiny_config(epochs=1)
  c.data.update(source="dir", dir=str(data))
  train_and_evaluate(c, workdir)
  (data / "test.txt").write_text("a dog sat on the mat\n" * 40)
  before = {p: (os.path.getmtime(os.path.join(r, p)), open(os.path.join(r, p), "rb").read())
            for r, _, files in os.walk(workdir) for p in files}
  c.epochs = 2
  with pytest.raises(UserError, match="trained with a different vocabulary"):
    train_and_evaluate(c, workdir, resume=True)
  assert before == {p: (os.path.getmtime(os.path.join(r, p)), open(os.path.join(r, p), "rb").read())
                    for r, _, files in os.walk(workdir) for p in files}


def test_checkpoint_of_another_shape_is_a_user_error(tmp_path):
  train_and_evaluate(tiny_config(epochs=1), str(tmp_path))
  like = {"params": {"embedding": np.zeros((200, 99), np.float32)}}
  with pytest.raises(UserError, match="does not match the model"):
    checkpoints.restore(str(tmp_path), checkpoints.BEST, like)


def test_lr_rules_follow_the_reference_and_zaremba():
  c = tiny_config(**{"optim.lr": 20.0}).optim
  assert optim.next_learning_rate(c, 20.0, 1, improved=True) == 20.0
  assert optim.next_learning_rate(c, 20.0, 1, improved=False) == 5.0
  z = tiny_config(**{"optim.lr": 1.0, "optim.schedule": "decay_after", "optim.lr_decay": 2.0,
                     "optim.lr_decay_start": 4}).optim
  lrs = [1.0] + [optim.next_learning_rate(z, None, epoch, True) for epoch in range(1, 13)]
  assert lrs == [1, 1, 1, 1, 0.5, 0.25, 0.125, 0.0625, 2 ** -5, 2 ** -6, 2 ** -7, 2 ** -8, 2 ** -9]


def test_sampling_follows_softmax_of_logits_over_temperature(tmp_path):
  from lm_jax.generate import generate, predict, sampling_logits

  train_and_evaluate(tiny_config(epochs=1), str(tmp_path))
  run = trained.load(str(tmp_path))
  prompt = np.array([3, 5], np.int32)
  temperature = 0.7
  expected = np.asarray(jax.nn.softmax(np.asarray(predict(run.model, run.params, prompt), np.float64) / temperature))
  firsts = generate(run.model, run.params, jax.random.PRNGKey(0), 1, temperature, 0, prompt, num_samples=4000)[:, 0]
  counts = np.bincount(np.asarray(firsts), minlength=len(expected))
  top = np.argsort(expected)[-5:]
  sigma = np.sqrt(4000 * expected[top] * (1 - expected[top]))
  assert np.all(np.abs(counts[top] - 4000 * expected[top]) < 5 * sigma + 1), (counts[top], 4000 * expected[top])
  kept = np.isfinite(np.asarray(sampling_logits(np.arange(10.0), 1.0, top_k=3)))
  assert kept.tolist() == [False] * 7 + [True] * 3
  a = generate(run.model, run.params, jax.random.PRNGKey(5), 30, 1.0, 0, None)
  b = generate(run.model, run.params, jax.random.PRNGKey(5), 30, 1.0, 0, None)
  assert a.shape == (1, 30) and np.array_equal(a, b)


def test_top_k_keeps_exactly_k_words_when_logits_tie():
  from lm_jax.generate import sampling_logits

  kept = np.isfinite(np.asarray(sampling_logits(np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.0]), 1.0, top_k=3)))
  assert kept.sum() == 3 and kept[[1, 3]].all()  # both 3s and one of the three tied 2s


@pytest.mark.parametrize("config_file", ["ptb_small", "ptb_medium", "ptb_large"])
def test_shipped_zaremba_configs_start_at_their_configured_lr(config_file):
  import importlib

  c = importlib.import_module(f"configs.{config_file}").get_config().optim
  assert c.schedule == "decay_after" and c.lr_decay_start >= 1
  assert optim.initial_learning_rate(c) == c.lr


def test_first_epoch_lr_follows_the_schedule_too():
  """lr = lr0 / lr_decay ** max(0, epoch - lr_decay_start), epochs 1-based; plateau starts at lr0."""
  c = tiny_config(**{"optim.lr": 1.0, "optim.schedule": "decay_after", "optim.lr_decay": 2.0,
                     "optim.lr_decay_start": 0}).optim
  assert optim.initial_learning_rate(c) == 0.5
  assert optim.initial_learning_rate(tiny_config(**{"optim.lr": 20.0}).optim) == 20.0


def lrs_applied(tmp_path, c, epochs_first: int) -> tuple[list[float], list[float]]:
  """Trains `c` (one window an epoch, plain SGD, no clip, no dropout) for `epochs_first` epochs, then resumes it
  to `c.epochs`. Returns the lr each epoch's step applied, found as <params change, gradient> / |gradient|^2 with
  the gradient computed independently, and the valid losses recorded."""
  from lm_jax.data.batching import put_on_device, window_at
  from lm_jax.data.sources import load_corpus
  from lm_jax.loss import window_loss

  params_at, save = {}, checkpoints.save

  def recording_save(workdir, kind, step, state, meta):
    if kind == checkpoints.LATEST:
      params_at[step] = jax.device_get(state["params"])
    save(workdir, kind, step, state, meta)

  workdir = str(tmp_path / "run")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(checkpoints, "save", recording_save)
    first = c.copy_and_resolve_references()
    first.epochs = epochs_first
    train_and_evaluate(first, workdir)
    train_and_evaluate(c, workdir, resume=True)
  corpus = load_corpus(c.data)
  model = model_from_config(c.model, len(corpus.vocab))
  params_at[0] = model.init_params(c.seed)
  window = window_at(put_on_device(corpus.ids["train"], c.batch_size, c.bptt).padded_TxB, 0, c.bptt, c.bptt)
  lrs = []
  for epoch in range(1, c.epochs + 1):
    before = params_at[epoch - 1]
    grads = jax.grad(lambda p: window_loss(model, p, model.init_carry(c.batch_size), window, train=False)[0])(before)
    change = jax.tree.map(lambda old, new: np.asarray(old, np.float64) - np.asarray(new), before, params_at[epoch])
    dot = sum(np.sum(d * np.asarray(g, np.float64)) for d, g in zip(jax.tree.leaves(change), jax.tree.leaves(grads)))
    lrs.append(dot / sum(np.sum(np.asarray(g, np.float64) ** 2) for g in jax.tree.leaves(grads)))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    valid_losses = [r["valid_loss"] for r in map(json.loads, f) if "epoch" in r]
  return lrs, valid_losses


def one_window_sgd_config(**optim) -> ml_collections.ConfigDict:
  c = tiny_config(**{"epochs": 4, "optim.clip": 1e9, **{f"optim.{k}": v for k, v in optim.items()}})
  c.data.synthetic.train_tokens = 8 * 11  # 11 rows of 8 columns: one window of 10 an epoch
  return c


def test_lr_applied_each_epoch_follows_decay_after_and_survives_resume(tmp_path):
  """lr = lr0 / lr_decay ** max(0, epoch - lr_decay_start), epoch 1 included (it was left undecayed)."""
  lrs, _ = lrs_applied(tmp_path, one_window_sgd_config(lr=1.0, schedule="decay_after", lr_decay=2.0,
                                                       lr_decay_start=0), epochs_first=2)
  np.testing.assert_allclose(lrs, [0.5, 0.25, 0.125, 0.0625], rtol=1e-3)


def test_lr_applied_each_epoch_follows_the_plateau_rule_and_survives_resume(tmp_path):
  lrs, valid_losses = lrs_applied(tmp_path, one_window_sgd_config(lr=40.0, schedule="plateau", lr_decay=4.0),
                                  epochs_first=2)
  expected, best = [40.0], math.inf
  for loss in valid_losses[:-1]:
    expected.append(expected[-1] if loss < best else expected[-1] / 4)
    best = min(best, loss)
  assert expected[-1] < 40.0, valid_losses  # the rule was exercised: some epoch did not improve
  np.testing.assert_allclose(lrs, expected, rtol=1e-3)


def test_greedy_generation_follows_argmax_of_predict_on_the_growing_prefix():
  """At a tiny temperature, sampling is argmax: 25 words past the prompt, each the argmax of the model's
  next-word logits on the prompt plus the words before it. Those come from one pass of the training-time forward
  over the whole sequence (causal: position t sees only the prefix up to t), and `predict` agrees at the end."""
  from lm_jax.generate import generate, predict
  from lm_jax.models.rnn_model import RNNModel

  model = RNNModel(vocab_size=50, cell="gru", emsize=16, nhid=16, nlayers=2, dropout=0.0, init_range=3.0)
  params = model.init_params(3)
  prompt = np.array([4, 7, 1], np.int32)
  words = np.asarray(generate(model, params, jax.random.PRNGKey(0), 25, 1e-4, 0, prompt))[0]
  sequence = np.concatenate([prompt, words]).astype(np.int32)
  features_Tx1xH = model.features(params, sequence[:-1, None], model.init_carry(1)).features_TxBxH
  logits_TxV = np.asarray(model.logits(params, features_Tx1xH))[len(prompt) - 1:, 0]
  top2_Tx2 = np.sort(logits_TxV, axis=-1)[:, -2:]
  # A clear argmax everywhere: at temperature 1e-4 the runner-up has odds < e^-20.
  assert np.all(top2_Tx2[:, 1] - top2_Tx2[:, 0] > 2e-3)
  np.testing.assert_array_equal(words, np.argmax(logits_TxV, axis=-1))
  np.testing.assert_allclose(predict(model, params, sequence[:-1]), jax.nn.log_softmax(logits_TxV[-1]), atol=1e-5)
  assert len(set(words.tolist())) > 3  # it did move through the vocabulary
