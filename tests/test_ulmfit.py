"""ULMFiT (issue #22): the lm_encoder classifier computes what the language model it came from computes, BPT3C's
chunks change nothing but where the gradient stops, concat pooling matches NumPy, the fine-tuning recipe's lr per layer
group and step matches Howard & Ruder's formulas, frozen groups stay exactly untouched (parameters, weight decay,
optimiser state), bad input is one line with nothing written, and the corpus writer and vocabulary transfer that
LM fine-tuning needs."""

from __future__ import annotations

import collections
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lm_jax import checkpoints, finetuning, lm_run, optim, vocab_transfer
from lm_jax.classify import trained
from lm_jax.classify.config import classify_config
from lm_jax.classify.data.config import load_corpus
from lm_jax.classify.data.prepare import tokenize_texts
from lm_jax.classify.lm_corpus import write_lm_corpus
from lm_jax.classify.models.bpt3c import tail_outputs
from lm_jax.classify.models.pooling import concat_pool
from lm_jax.classify.models.registry import model_from_config
from lm_jax.classify.train import train_and_evaluate
from lm_jax.config import reference_config
from lm_jax.data.vocab import Vocabulary
from lm_jax.errors import UserError
from lm_jax.models.registry import model_from_config as lm_from_config
from tests.conftest import tiny_config

UNSEEN = "never-in-the-corpus"  # a word of the LM's vocabulary that no classification text holds


def classifier_config(encoder_from: str, **optim_fields) -> ml_collections.ConfigDict:
  c = classify_config("lm_encoder")
  c.data.synthetic.update(train_size=100, dev_size=40, test_size=40, noise_words=20, min_words=4, max_words=8)
  c.data.max_len = 8  # one bucket length: one compiled step
  c.model.update(encoder_from=encoder_from, hidden=6, bptt=3, max_len=8)
  c.optim.update(dict(dict(name="adam", lr=1e-2, clip=0.0, betas=(0.7, 0.99), schedule="stlr", layer_lr_decay=2.6,
                           unfreeze_every=1), **optim_fields))
  c.update(epochs=4, batch_size=32, eval_batch_size=64)
  return c


def lm_config(**model) -> ml_collections.ConfigDict:
  c = reference_config()
  c.model.update(cell="lstm", emsize=8, nhid=12, nlayers=2, tied=True, locked_dropout=True, dropout=0.3,
                 dropouti=0.2, dropouth=0.2, dropoute=0.1, wdrop=0.3)
  c.model.update(model)
  return c


def save_lm(workdir: str, config: ml_collections.ConfigDict, words: list[str]):
  """An LM run's best checkpoint: parameters U(-0.5, 0.5) (states that vary), its vocabulary and config."""
  model = lm_from_config(config.model, len(words))
  rng = np.random.default_rng(0)
  params = {name: rng.uniform(-0.5, 0.5, s.shape).astype(np.float32)
            for name, s in jax.eval_shape(model.init_params, 0).items()}
  checkpoints.save(workdir, checkpoints.BEST, 1, {"params": params},
                   {"vocab": words, "config": config.to_dict(), "epoch": 1, "val_loss": 1.0})
  return model, {name: jnp.asarray(value) for name, value in params.items()}


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
  """A 2-layer AWD-LSTM run whose vocabulary holds the synthetic corpus's words, <unk> and one unseen word."""
  corpus = load_corpus(classifier_config("").data)
  words = sorted({w for split in corpus.splits.values() for t in tokenize_texts(split.texts, classifier_config("").data)
                  for w in t})
  path = str(tmp_path_factory.mktemp("lm"))
  model, params = save_lm(path, lm_config(), ["<eos>", "<unk>", UNSEEN] + words)
  return path, model, params, Vocabulary(["<eos>", "<unk>", UNSEEN] + words)


def padded_rows(rows: list[list[int]], starts: list[int], steps: int) -> tuple[np.ndarray, np.ndarray]:
  tokens_BxT, mask_BxT = np.zeros((len(rows), steps), np.int32), np.zeros((len(rows), steps), bool)
  for b, (row, start) in enumerate(zip(rows, starts)):
    tokens_BxT[b, start:start + len(row)], mask_BxT[b, start:start + len(row)] = row, True
  return tokens_BxT, mask_BxT


def numpy_concat_pool(h_LxH: np.ndarray) -> np.ndarray:
  h = h_LxH.astype(np.float64)
  return np.concatenate([h[-1], h.max(axis=0), h.mean(axis=0)])


def lm_outputs(model, params, tokens_TxB, **kwargs) -> np.ndarray:
  """The language model's own top-layer outputs over unpadded rows, in one pass from a zero state."""
  run = jax.jit(lambda p, x, masks: model.features(p, x, model.init_carry(x.shape[1]), **kwargs, masks=masks))
  return np.asarray(run(params, jnp.asarray(tokens_TxB), kwargs.pop("masks", None)).aux["top_raw_TxBxH"])


def test_the_encoder_gives_the_language_models_hidden_states_chunks_and_dropout_included(lm):
  _, model, params, _ = lm
  rows_TxB = np.arange(5, 35).reshape(10, 3)
  # 10 real tokens in 13 steps: right padding, and padding on both sides.
  tokens_BxT, mask_BxT = padded_rows(rows_TxB.T.tolist(), [0, 3, 1], 13)
  rng, masks = jax.random.PRNGKey(3), jax.jit(model.dropout_masks, static_argnums=1)(jax.random.PRNGKey(4), 3)
  # max_len 4 of 13 steps: a 9-step prefix in chunks of 4 (3 padded), the state carried into a 4-step tail.
  tail = jax.jit(lambda p, tokens, mask: tail_outputs(model, p, tokens, mask, bptt=4, max_len=4, train=True, rng=rng,
                                                      masks=masks))
  h_BxLxH, mask_BxL = tail(params, tokens_BxT, mask_BxT)
  h_TxBxH = lm_outputs(model, params, rows_TxB, train=True, rng=rng, masks=masks)
  np.testing.assert_allclose(np.swapaxes(h_BxLxH, 0, 1), h_TxBxH[-4:], rtol=1e-5, atol=1e-6)
  assert np.all(mask_BxL)


def test_concat_pooling_matches_numpy_with_padding_on_either_side():
  x_BxTxH = np.random.default_rng(0).normal(size=(5, 7, 3)).astype(np.float32)
  mask_BxT = np.array([[1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1],
                       [0, 0, 0, 0, 0, 0, 0]], bool)
  pooled_Bx3H = np.asarray(concat_pool(jnp.asarray(x_BxTxH), jnp.asarray(mask_BxT)))
  for b in range(4):
    np.testing.assert_allclose(pooled_Bx3H[b], numpy_concat_pool(x_BxTxH[b][mask_BxT[b]]), rtol=1e-6)
  np.testing.assert_array_equal(pooled_Bx3H[4], 0.0)  # a filler row pools to zeros


def test_bpt3c_pools_what_one_pass_computes_and_cuts_the_gradient_before_the_tail(lm):
  path, lm_model, lm_params, vocab = lm
  c = classifier_config(path)
  c.model.update(bptt=2, max_len=5)
  model = model_from_config(c.model, len(vocab), 2)
  params, _ = model.initial_params(model.init_params(0), vocab.words, c.model)
  # Words 3..9 only in the prefixes (before each row's last 5 tokens), words 10..25 only in the tails; two documents
  # shorter than max_len.
  rows = [[3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14], [9, 3, 4, 5, 6, 7, 15, 16, 17, 18, 19], [20, 21, 22, 23],
          [24, 25, 10, 11]]
  tokens_BxT, mask_BxT = padded_rows(rows, [0, 0, 0, 0], 11)
  weights_Bx3H = np.random.default_rng(1).normal(size=(4, 3 * lm_model.sizes[-1])).astype(np.float32)

  def weighted_sum(params):
    pooled_Bx3H = model.pooled(params, tokens_BxT, mask_BxT)
    return jnp.sum(pooled_Bx3H * weights_Bx3H), pooled_Bx3H

  grads, pooled_Bx3H = jax.jit(jax.grad(weighted_sum, has_aux=True))(params)
  for pair in ((0, 1), (2, 3)):
    h_TxBxH = lm_outputs(lm_model, lm_params, np.array([rows[b] for b in pair]).T)
    for column, b in enumerate(pair):
      np.testing.assert_allclose(pooled_Bx3H[b], numpy_concat_pool(h_TxBxH[-5:, column]), rtol=2e-5, atol=1e-6)
  row_norms_V = np.linalg.norm(np.asarray(grads["embedding"]), axis=1)
  np.testing.assert_array_equal(row_norms_V[3:10], 0.0)
  assert np.all(row_norms_V[10:26] > 0)


def paper_stlr(t: int, steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
  """Howard & Ruder (2018), eq. 3, as printed."""
  cut = math.floor(steps * cut_frac)
  p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
  return (1 + p * (ratio - 1)) / ratio


def recipe(**fields) -> ml_collections.ConfigDict:
  c = reference_config().optim
  c.update(fields)
  return c


def test_lr_per_layer_group_and_step_follows_stlr_and_the_2_6_divisions():
  c = recipe(name="sgd", lr=0.1, clip=0.0, schedule="stlr", layer_lr_decay=2.6, unfreeze_every=1)
  # 3 groups over 4 epochs of 10 steps: the cycles are epoch 1, epoch 2 (one per unfreezing) and epochs 3-4.
  scales = [finetuning.epoch_lr_scales(c, e, 4, 3, lambda e: 10) for e in (1, 2, 3, 4)]
  np.testing.assert_allclose(scales[0], [paper_stlr(t, 10) for t in range(10)], rtol=1e-12)
  np.testing.assert_allclose(scales[1], scales[0], rtol=1e-12)
  np.testing.assert_allclose(np.concatenate(scales[2:]), [paper_stlr(t, 20) for t in range(20)], rtol=1e-12)
  assert [finetuning.trainable_flags(c, e, 3).tolist() for e in (1, 2, 3, 4)] == [[0, 0, 1], [0, 1, 1], [1, 1, 1]] + [
      [1, 1, 1]]
  assert min(finetuning.stlr(t, 105, 0.1, 32.0) for t in range(105)) > 0  # where the paper's p dips below 0

  params = {"emb": jnp.ones(2), "rnn": jnp.ones(3), "head": jnp.ones(4)}
  optimizer = optim.make_optimizer(c, groups=(("emb",), ("rnn",), ("head",)))
  state = finetuning.at_epoch(c, optimizer.init(params), 0.1, 3)
  grads = {name: jnp.arange(1.0, 1.0 + p.size) for name, p in params.items()}
  updates, _ = jax.jit(lambda *args: optim.update_with_lr_scale(optimizer, *args))(grads, state, params, scales[2][4])
  for name, above in (("emb", 2), ("rnn", 1), ("head", 0)):
    np.testing.assert_allclose(updates[name], -0.1 * paper_stlr(4, 20) / 2.6 ** above * grads[name], rtol=1e-6)


def test_each_unfreezing_stage_trains_at_its_factor_of_the_lr():
  c = recipe(name="sgd", lr=0.1, clip=0.0, schedule="stlr", layer_lr_decay=2.6, unfreeze_every=1,
             stage_lr_factors=(4.0, 2.0, 0.5))
  # 3 groups over 4 epochs of 10 steps: stages epoch 1 (x4), epoch 2 (x2) and epochs 3-4 (x0.5), a cycle each.
  scales = [finetuning.epoch_lr_scales(c, e, 4, 3, lambda e: 10) for e in (1, 2, 3, 4)]
  np.testing.assert_allclose(scales[0], [4.0 * paper_stlr(t, 10) for t in range(10)], rtol=1e-12)
  np.testing.assert_allclose(scales[1], [2.0 * paper_stlr(t, 10) for t in range(10)], rtol=1e-12)
  np.testing.assert_allclose(np.concatenate(scales[2:]), [0.5 * paper_stlr(t, 20) for t in range(20)], rtol=1e-12)
  c.schedule, c.unfreeze_every = "plateau", 2  # under an epoch-level schedule, the stage's factor alone
  assert [finetuning.epoch_lr_scales(c, e, 6, 3, lambda e: 2).tolist() for e in range(1, 7)] == [
      [4.0, 4.0], [4.0, 4.0], [2.0, 2.0], [2.0, 2.0], [0.5, 0.5], [0.5, 0.5]]


def test_the_classifier_steps_and_logs_each_stages_lr(lm, tmp_path):
  """Each logged lr is the one its step took: lr x the stage's factor x STLR's, by the paper's formula."""
  factors = (4.0, 2.0, 1.0, 0.5)  # the LM's 2 layers, its embedding and the head: 4 groups, a stage per epoch
  c = classifier_config(lm[0], stage_lr_factors=factors)
  c.update(batch_size=10, log_interval=1)  # 100 training examples: 10 steps per epoch, STLR's cut a whole step
  train_and_evaluate(c, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    logged = [(r["step"], r["lr"]) for r in map(json.loads, f) if "train_loss" in r]
  assert [step for step, _ in logged] == list(range(1, 41))
  expected = [1e-2 * factor * paper_stlr(t, 10) for factor in factors for t in range(10)]
  np.testing.assert_allclose([lr for _, lr in logged], expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_frozen_groups_get_exactly_zero_updates_and_start_adam_afresh_when_unfrozen(name):
  c = recipe(name=name, lr=0.05, clip=1.0, weight_decay=0.1, betas=(0.7, 0.99), layer_lr_decay=2.6, unfreeze_every=1)
  rng = np.random.default_rng(0)
  params = {"low": jnp.asarray(rng.normal(size=3), jnp.float32), "top": jnp.asarray(rng.normal(size=2), jnp.float32)}
  grads = [{k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()} for _ in range(5)]
  optimizer = optim.make_optimizer(c, groups=(("low",), ("top",)))
  state, update = optimizer.init(params), jax.jit(optimizer.update)
  p = params
  for step, g in enumerate(grads):
    state = finetuning.at_epoch(c, state, c.lr, epoch=1 if step < 3 else 2)  # epoch 1: 3 steps, the top alone
    updates, state = update(g, state, p)
    p = optax.apply_updates(p, updates)
    if step < 3:
      np.testing.assert_array_equal(p["low"], params["low"])

  # The reference: each group on its own optax optimiser (a fresh one for `low` when it unfreezes), after torch's
  # clip over the groups that train.
  def reference(group: str, lr: float, steps: range) -> jax.Array:
    opt = (optax.chain(optax.add_decayed_weights(0.1), optax.adam(lr, 0.7, 0.99)) if name == "adam" else
           optax.adamw(lr, 0.7, 0.99, weight_decay=0.1))
    value, opt_state = params[group], None
    for step in steps:
      trained = ("top",) if step < 3 else ("low", "top")
      norm = math.sqrt(sum(float(jnp.sum(grads[step][k] ** 2)) for k in trained))
      g = grads[step][group] * min(1.0, 1.0 / (norm + 1e-6))
      opt_state = opt.init(value) if opt_state is None else opt_state
      update, opt_state = opt.update(g, opt_state, value)
      value = value + update
    return value

  np.testing.assert_allclose(p["top"], reference("top", 0.05, range(5)), rtol=1e-5)
  np.testing.assert_allclose(p["low"], reference("low", 0.05 / 2.6, range(3, 5)), rtol=1e-5)


def test_the_classifier_trains_from_the_language_model_and_leaves_unseen_words_alone(lm, tmp_path):
  vocab = lm[3]
  path = str(tmp_path / "lm")
  plain_lm = lm_config(nlayers=1, locked_dropout=False, dropouti=0.0, dropouth=0.0)  # one layer: quicker to compile
  _, lm_params = save_lm(path, plain_lm, list(vocab.words))
  c = classifier_config(path, weight_decay=0.0)
  c.optim.unfreeze_every, c.epochs = 0, 1
  results = train_and_evaluate(c, str(tmp_path / "run"))
  assert 0.0 <= results["test_accuracy"] <= 1.0
  model = trained.load(str(tmp_path / "run")).model
  final, _ = checkpoints.restore(str(tmp_path / "run"), checkpoints.LATEST,
                                 {"params": jax.eval_shape(lambda: model.init_params(0))})
  unseen = vocab.index[UNSEEN]  # no gradient, no weight decay: Adam leaves its row as the LM trained it
  np.testing.assert_array_equal(final["params"]["embedding"][unseen], lm_params["embedding"][unseen])
  assert not np.array_equal(final["params"]["layer_0_w_hh"], lm_params["layer_0_w_hh"])


def corrupted(path: str, tmp_path) -> str:
  copy = str(tmp_path / "damaged")
  shutil.copytree(path, copy)
  step_dir = os.path.join(checkpoints.checkpoint_dir(copy, checkpoints.BEST), "1")
  name = sorted(checkpoints.array_file_checksums(step_dir))[-1]
  with open(os.path.join(step_dir, name), "r+b") as f:
    f.seek(0)
    f.write(b"\x00\xff" * 8)
  return copy


def transformer_run(tmp_path) -> str:
  c = reference_config()
  c.model.update(kind="transformer", emsize=8, nhid=16, nlayers=1, nhead=2)
  save_lm(str(tmp_path / "transformer"), c, ["<unk>", "a", "b"])
  return str(tmp_path / "transformer")


def foreign_run(tmp_path) -> str:
  save_lm(str(tmp_path / "foreign"), lm_config(), ["<unk>", "<eos>", "zebra", "yak"])
  return str(tmp_path / "foreign")


STAGES = {"stage count": dict(stage_lr_factors=(2.0, 1.0)), "stage sign": dict(stage_lr_factors=(2.0, 1.0, 0.0, 1.0)),
          "stages alone": dict(stage_lr_factors=(2.0, 1.0, 1.0, 1.0), unfreeze_every=0)}


@pytest.mark.parametrize("case, problem", [
    ("empty", "encoder_from is empty"), ("missing", "is not a directory"),
    ("transformer", "holds a transformer language model"),
    ("damaged", "is damaged"), ("foreign", r"only 0\.0% of the training split's tokens are in the vocabulary"),
    ("unfreezing", "unfreezes the last of the model's 4 layer groups at epoch 4, past the last epoch 3"),
    ("stage count", "stage_lr_factors has 2 factors for the model's 4 layer groups"),
    ("stage sign", r"stage_lr_factors must all be > 0 \(got \(2.0, 1.0, 0.0, 1.0\)\)"),
    ("stages alone", "stage_lr_factors sets the lr of each gradual-unfreezing stage; pass "
                     "--config.optim.unfreeze_every=1")])
def test_bad_input_is_one_line_and_writes_nothing(lm, tmp_path, case, problem):
  encoder_from = {"empty": lambda: "", "missing": lambda: str(tmp_path / "nothing"),
                  "transformer": lambda: transformer_run(tmp_path), "damaged": lambda: corrupted(lm[0], tmp_path),
                  "foreign": lambda: foreign_run(tmp_path)}.get(case, lambda: lm[0])()
  c = classifier_config(encoder_from, **STAGES.get(case, {}))
  c.epochs = 3 if case == "unfreezing" else 4
  with pytest.raises(UserError, match=problem):
    train_and_evaluate(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_the_lm_corpus_is_the_training_text_with_rare_words_as_unk(tmp_path):
  data = classifier_config("").data
  data.synthetic.update(noise_words=200)  # a long tail: words seen once
  written = write_lm_corpus(data, str(tmp_path / "text"), held_out=0.1, min_count=2, seed=0)
  documents = tokenize_texts(load_corpus(data).splits["train"].texts, data)
  lines = {s: open(tmp_path / "text" / f"{s}.txt").read().splitlines() for s in ("train", "valid", "test")}
  assert [len(lines[s]) for s in ("train", "valid", "test")] == [90, 5, 5]
  counts = collections.Counter(w for line in lines["train"] for w in line.split())
  kept = set(counts) - {"<unk>"}
  assert all(counts[w] >= 2 for w in kept) and counts["<unk>"] > 0 and written.vocab_size == len(kept) + 1
  # Every training document once, each word as it was if train.txt holds it twice or more, else <unk>.
  rewritten = sorted(" ".join(w if w in kept else "<unk>" for w in d) for d in documents)
  assert sorted(lines["train"] + lines["valid"] + lines["test"]) == rewritten
  held_out_words = {w for s in ("valid", "test") for line in lines[s] for w in line.split()}
  assert held_out_words <= kept | {"<unk>"}
  with pytest.raises(UserError, match="exists"):
    write_lm_corpus(data, str(tmp_path / "text"))


def test_finetuning_moves_the_trained_rows_to_the_new_vocabulary_and_new_words_start_at_the_mean():
  model = lm_from_config(lm_config(tied=False, nlayers=1).model, 4)
  rng = np.random.default_rng(0)
  params = {k: rng.normal(size=s.shape).astype(np.float32) for k, s in jax.eval_shape(model.init_params, 0).items()}
  moved, known = vocab_transfer.transfer(model, params, Vocabulary(["a", "b", "c", "d"]), Vocabulary(["c", "x", "a"]))
  assert known == 2 and sorted(vocab_transfer.vocabulary_axes(model)) == ["decoder_bias", "decoder_weight", "embedding"]
  for name in ("embedding", "decoder_weight", "decoder_bias"):
    np.testing.assert_array_equal(moved[name][[0, 2]], params[name][[2, 0]])
    np.testing.assert_allclose(moved[name][1], params[name].mean(axis=0), rtol=1e-6)
  np.testing.assert_array_equal(moved["layer_0_w_hh"], params["layer_0_w_hh"])


def test_the_lm_trainer_reads_the_same_recipe(tmp_path):
  c = tiny_config(**{"optim.name": "adam", "optim.lr": 1e-3, "optim.schedule": "stlr", "optim.layer_lr_decay": 2.6})
  run = lm_run.setup_run(c, str(tmp_path))
  assert lm_run.layer_groups(run.model) == (("layer_0_b_hh", "layer_0_b_ih", "layer_0_w_hh", "layer_0_w_ih"),
                                            ("decoder_bias", "decoder_weight", "embedding"))
  windows = lm_run.epoch_windows(run, 1) + lm_run.epoch_windows(run, 2)  # one cycle over the run's 2 x 150 windows
  assert len(windows) == 300
  np.testing.assert_allclose([w.lr_scale for w in windows], [paper_stlr(t, 300) for t in range(300)], rtol=1e-12)
  c.optim.unfreeze_every = 2
  with pytest.raises(UserError, match="past the last epoch 2"):
    lm_run.setup_run(c, str(tmp_path))
