"""The Transformer family: against PyTorch's word_language_model TransformerModel (same function, training
steps, perplexity, checkpoints both ways), causality with and without memory (either positions), KV-cache
generation against re-running the whole sequence, the whole trainer/generator path, and its user errors.
Relative errors are norm-wise: max|a - b| / max|b|, b PyTorch's."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import checkpoints, config as config_lib, convert, trained
from lm_jax.data.batching import put_on_device
from lm_jax.errors import UserError
from lm_jax.evaluate import Evaluator
from lm_jax.generate import generate, sample_word, sampling_logits
from lm_jax.models.rnn_model import RNNModel
from lm_jax.models import transformer_convert
from lm_jax.models.transformer import TransformerModel
from lm_jax.train import train_and_evaluate
from tests.conftest import reference_training_losses, tiny_config, token_ids

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def needs_torch():
  return pytest.importorskip("torch", reason="compares with PyTorch: pip install 'lm_jax[torch]'")


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def torch_transformer(nlayers: int, vocab_size: int = 50, emsize: int = 16, nhid: int = 24, seed: int = 0,
                      random_weights: bool = False, norm_first: bool = False):
  """Reference init without dropout, or with `random_weights` every tensor (biases, LayerNorms too) ~
  U(-0.3, 0.3). nhid != emsize, so a transposed or swapped matrix cannot go unnoticed."""
  torch = needs_torch()
  from torch_reference.transformer import TorchTransformerModel

  torch.manual_seed(seed)
  model = TorchTransformerModel(vocab_size, emsize, 2, nhid, nlayers, dropout=0.0, layer_dropout=0.0,
                                norm_first=norm_first)
  if random_weights:
    with torch.no_grad():
      for p in model.parameters():
        p.uniform_(-0.3, 0.3)
  return model


def numpy_state_dict(model) -> dict[str, np.ndarray]:
  return {name: t.detach().numpy() for name, t in model.state_dict().items()}


def imported(reference, **options) -> tuple[TransformerModel, dict]:
  shape, params = convert.import_state_dict(numpy_state_dict(reference))
  return dataclasses.replace(shape, dropout=0.0, layer_dropout=0.0, **options), params


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("nlayers", [1, 3])
def test_logits_match_torch(nlayers, pre_norm):
  torch = needs_torch()
  reference = torch_transformer(nlayers, random_weights=True, norm_first=pre_norm)
  model, params = imported(reference, pre_norm=pre_norm)
  tokens_TxB = np.random.default_rng(1).integers(50, size=(9, 4))
  with torch.no_grad():
    expected_TxBxV, _ = reference.eval()(torch.from_numpy(tokens_TxB))
  output = model.features(params, jnp.asarray(tokens_TxB), model.init_carry(4))
  assert output.carry == ()
  assert rel_err(model.logits(params, output.features_TxBxH), expected_TxBxV) < 1e-5


def training_errors(nlayers: int, lr: float, dtype_name: str = "float32") -> tuple[float, float]:
  """20 reference training steps (bptt 35, batch 20, clip 0.25, dropout 0), the last window short, on both
  sides: the worst absolute loss difference and the worst relative error of a final parameter."""
  torch = needs_torch()
  from torch_reference import word_language_model as torch_reference

  config = config_lib.reference_config()
  config.optim.lr = lr
  rows = 19 * config.bptt + 20 + 1
  ids = token_ids(rows * config.batch_size + 7, vocab_size=100, seed=2)
  reference = torch_transformer(nlayers, vocab_size=100, emsize=32, nhid=48, seed=4).to(getattr(torch, dtype_name))
  model, params = imported(reference)
  # Both float32 tables round some sines differently in the last bit (6e-8); at lr 20 in float64 that is
  # the largest difference left, so the reference gets lm_jax's table.
  reference.pos_encoder.pe.copy_(torch.from_numpy(transformer_convert.positional_table(32)))
  losses, final_params = reference_training_losses(model, params, config, ids)
  data_TxB = torch_reference.batchify(torch.from_numpy(ids).long(), config.batch_size)
  expected_losses = torch_reference.train(reference, data_TxB, config.bptt, config.optim.lr, config.optim.clip)
  assert len(losses) == len(expected_losses) == 20
  assert abs(expected_losses[-1] - expected_losses[0]) > 0.1  # the steps did move the model
  state_dict = convert.export_state_dict(model, final_params)
  return (float(np.max(np.abs(np.subtract(losses, expected_losses)))),
          max(rel_err(state_dict[name], expected) for name, expected in numpy_state_dict(reference).items()))


# At the reference's lr 20 this transformer is chaotic (gradient norms jump from 0.6 to 21 and the clip
# acts on most steps): float32 rounding alone grows to 5e-3 in the loss by step 19. So float32 is checked
# at lr 1, where nothing is amplified, and the reference's lr 20 in float64, where every difference in the
# step (clip rule, loss, gradient) would show.
@pytest.mark.parametrize("nlayers", [1, 2])
def test_twenty_training_steps_match_torch(nlayers):
  loss_error, param_error = training_errors(nlayers, lr=1.0)
  assert loss_error < 1e-4 and param_error < 1e-4


@pytest.mark.parametrize("nlayers", [1, 2])
def test_twenty_training_steps_at_lr_20_match_torch_in_float64(nlayers):
  with jax.enable_x64(True):
    loss_error, param_error = training_errors(nlayers, lr=20.0, dtype_name="float64")
  assert loss_error < 1e-9 and param_error < 1e-9


def test_evaluation_perplexity_matches_torch():
  torch = needs_torch()
  from torch_reference import word_language_model as torch_reference

  bptt, batch_size = 35, 10
  ids = token_ids((5 * bptt + 12 + 1) * batch_size + 3, vocab_size=100, seed=5)
  reference = torch_transformer(2, vocab_size=100, emsize=32, nhid=48, seed=6, random_weights=True)
  model, params = imported(reference)
  loss = Evaluator(model, bptt).mean_nll(params, put_on_device(ids, batch_size, bptt, "test"))
  expected = torch_reference.evaluate(reference, torch_reference.batchify(torch.from_numpy(ids).long(), batch_size),
                                      bptt)
  assert abs(math.exp(loss) - math.exp(expected)) / math.exp(expected) < 1e-5


def test_round_trip_through_torch_is_bitwise():
  torch = needs_torch()
  reference = torch_transformer(2)
  model = TransformerModel(vocab_size=50, emsize=16, nhead=2, nhid=24, nlayers=2)
  params = jax.tree.map(np.asarray, model.init_params(3))
  exported = convert.export_state_dict(model, params)
  assert list(exported) == list(reference.state_dict())  # the reference's names, pe too, in its order
  reference.load_state_dict(convert.to_torch(exported))
  # The reference's own table and ours: the same float32 function, within an ulp of sin and cos.
  assert np.max(np.abs(exported["pos_encoder.pe"] - torch_transformer(2).pos_encoder.pe.numpy())) < 1e-7
  back_model, back = convert.import_state_dict(numpy_state_dict(reference))
  assert back_model == model
  assert back.keys() == params.keys()
  for name, array in params.items():
    assert back[name].dtype == array.dtype and np.array_equal(back[name], array), name
  assert torch is not None


# --- causality, memory, generation ---------------------------------------------------------------


def random_model(**options) -> tuple[TransformerModel, dict]:
  model = TransformerModel(vocab_size=40, emsize=16, nhead=2, nhid=24, nlayers=2, dropout=0.0, layer_dropout=0.0,
                           **options)
  return model, model.init_params(0)


@pytest.mark.parametrize("memory, positions", [(0, "absolute"), (5, "absolute"), (5, "relative")])
def test_changing_token_t_changes_no_logit_before_t(memory, positions):
  model, params = random_model(memory=memory, positions=positions)
  tokens_NxTxB = np.random.default_rng(2).integers(40, size=(2, 8, 3))
  apply = jax.jit(lambda tokens_TxB, carry: model.features(params, tokens_TxB, carry))
  carry = apply(tokens_NxTxB[0], model.init_carry(3)).carry  # a first window fills the memory
  before = apply(tokens_NxTxB[1], carry).features_TxBxH
  for t in (0, 3, 7):
    changed_TxB = tokens_NxTxB[1].copy()
    changed_TxB[t] = (changed_TxB[t] + 1) % 40
    after = apply(changed_TxB, carry).features_TxBxH
    assert np.array_equal(after[:t], before[:t]), t
    assert not np.allclose(after[t], before[t]), t


def test_memory_carries_the_previous_window_at_consistent_positions():
  """With memory M >= the window, window 2 after window 1 is the whole sequence at once from zeros."""
  model, params = random_model(memory=8)
  tokens_TxB = jnp.asarray(np.random.default_rng(3).integers(40, size=(12, 2)))
  whole = model.features(params, tokens_TxB, model.init_carry(2)).features_TxBxH
  first = model.features(params, tokens_TxB[:6], model.init_carry(2))
  second = model.features(params, tokens_TxB[6:], first.carry).features_TxBxH
  assert rel_err(second, whole[6:]) < 1e-5
  assert list(first.carry.position_B) == [6, 6]


def whole_sequence_generate(model, params, rng, num_words, temperature, prompt_ids=None) -> list[int]:
  """lm_jax.generate's sampling, each word from the whole sequence so far fed from init_carry (the
  reference's way) rather than from the cache. The sequence is padded to its final length so that one program
  serves every step: attention is causal, so the positions after the last word change nothing before it."""
  first_rng, rng = jax.random.split(rng)
  sequence = list(prompt_ids) if prompt_ids is not None else [int(jax.random.randint(first_rng, (1,), 0, 40)[0])]
  length = len(sequence) + num_words

  @jax.jit
  def next_logits(tokens_T, last):
    features_TxBxH = model.features(params, tokens_T[:, None], model.init_carry(1)).features_TxBxH
    return model.logits(params, jax.lax.dynamic_slice_in_dim(features_TxBxH, last, 1))[0, 0]

  words = []
  for step_rng in jax.random.split(rng, num_words):
    padded_T = jnp.asarray(sequence + [0] * (length - len(sequence)))
    word = int(sample_word(step_rng, sampling_logits(next_logits(padded_T, len(sequence) - 1), temperature, 0)))
    sequence.append(word)
    words.append(word)
  return words


@pytest.mark.parametrize("memory, prompt, positions", [(0, None, "absolute"), (0, [3, 1, 4], "absolute"),
                                                       (4, [5, 9], "absolute"), (4, [5, 9], "relative")])
def test_kv_cache_generation_equals_rerunning_the_whole_sequence(memory, prompt, positions):
  model, params = random_model(memory=memory, positions=positions)
  rng = jax.random.PRNGKey(7)
  prompt_ids = None if prompt is None else jnp.asarray(prompt)
  words = generate(model, params, rng, 30, 1.0, 0, prompt_ids)[0]
  assert list(np.asarray(words)) == whole_sequence_generate(model, params, rng, 30, 1.0, prompt)


# --- the whole path: trainer, evaluator, checkpoints, CLI -------------------------------------------


def transformer_config(**overrides):
  # lr 20, the reference's, leaves this post-norm model worse than uniform after one epoch here.
  return tiny_config(**{"model.kind": "transformer", "epochs": 1, "optim.lr": 2.0, **overrides})


@pytest.mark.parametrize("options", [{}, {"model.memory": 6, "model.pre_norm": True, "model.transformer_tied": True,
                                          "model.positions": "relative"}], ids=["reference", "options"])
def test_trains_evaluates_and_generates_through_the_cli(tmp_path, options):
  results = train_and_evaluate(transformer_config(**options), str(tmp_path))
  assert results["test_loss"] < math.log(200) - 0.5  # learned something on 200 words
  run = trained.load(str(tmp_path))
  assert isinstance(run.model, TransformerModel) and run.model.memory == options.get("model.memory", 0)
  assert run.model.positions == options.get("model.positions", "absolute")
  result = subprocess.run([sys.executable, "-m", "lm_jax.cli.generate", f"--workdir={tmp_path}", "--words=25"],
                          capture_output=True, text=True, cwd=REPO, check=False)
  assert result.returncode == 0, result.stderr
  assert len(result.stdout.split()) == 25


# --- user errors: one line, nothing written ----------------------------------------------------------


def user_error(call, *args, **kwargs) -> str:
  with pytest.raises(UserError) as raised:
    call(*args, **kwargs)
  message = str(raised.value)
  assert "\n" not in message
  return message


def test_bad_transformer_config_fails_before_anything_is_written(tmp_path):
  for override, message in [
      ({"model.nhead": 3}, "config.model.nhead (3) must divide config.model.emsize (16); pass e.g. "
                           "--config.model.nhead=2"),
      ({"model.memory": -1}, "config.model.memory must be >= 0 (got -1); pass 0 for none"),
      ({"model.positions": "rotary"}, "unknown config.model.positions 'rotary'; use --config.model.positions= one of "
                                      "absolute, relative"),
      ({"model.layer_dropout": 1.0}, r"config.model.layer_dropout must be in [0, 1) (got 1.0)"),
      ({"model.emsize": 15, "model.nhead": 1}, "a transformer needs an even config.model.emsize (got 15)")]:
    assert user_error(train_and_evaluate, transformer_config(**override), str(tmp_path / "w")).startswith(message)
  assert not os.path.exists(tmp_path / "w")


@pytest.fixture
def data_dir(tmp_path) -> str:
  directory = tmp_path / "data"
  directory.mkdir()
  for split, seed in (("train", 7), ("valid", 8), ("test", 9)):
    words = [f"w{i}" for i in token_ids(600, vocab_size=30, seed=seed)]
    (directory / f"{split}.txt").write_text("\n".join(" ".join(words[i:i + 12]) for i in range(0, 600, 12)) + "\n")
  return str(directory)


def test_import_errors_on_flags_of_the_other_family_and_writes_nothing(tmp_path, data_dir):
  torch = needs_torch()
  from lm_jax.data.sources import corpus_from_lines, read_directory

  vocab_size = len(corpus_from_lines(read_directory(data_dir)).vocab)
  checkpoint = str(tmp_path / "transformer.pt")
  torch.save(torch_transformer(1, vocab_size=vocab_size).state_dict(), checkpoint)
  workdir = str(tmp_path / "run")
  assert user_error(convert.import_checkpoint, checkpoint, data_dir, workdir, "LSTM") == (
      "--cell=LSTM names an RNNModel's cell, but the checkpoint is a TransformerModel; omit --cell")
  assert user_error(convert.import_checkpoint, checkpoint, data_dir, workdir, nhead=3) == (
      "--nhead=3 does not divide the checkpoint's emsize 16; pass the reference's --nhead the model was trained with")
  assert not os.path.exists(workdir)
  state_dict = numpy_state_dict(torch_transformer(1))
  del state_dict["encoder.layers.0.norm2.bias"]
  assert user_error(convert.import_state_dict, state_dict) == (
      "the checkpoint has no encoder.layers.0.norm2.bias; import a whole TransformerModel state_dict")
  from torch_reference.word_language_model import TorchRNNModel

  rnn_state_dict = numpy_state_dict(TorchRNNModel("lstm", 50, 16, 16, 1))
  assert user_error(convert.import_state_dict, rnn_state_dict, None, 2) == (
      "--nhead=2 is a TransformerModel's, but the checkpoint is an RNNModel; omit --nhead")


def test_an_imported_transformer_read_as_an_rnn_is_a_user_error(tmp_path, data_dir):
  """lm-jax-import of a TransformerModel, then its checkpoint restored for an RNN config (as resuming or
  evaluating it with a mismatching config would): one line, not a traceback or a silent partial restore."""
  torch = needs_torch()
  from lm_jax.data.sources import corpus_from_lines, read_directory

  vocab_size = len(corpus_from_lines(read_directory(data_dir)).vocab)
  checkpoint = str(tmp_path / "transformer.pt")
  torch.save(torch_transformer(1, vocab_size=vocab_size).state_dict(), checkpoint)
  workdir = str(tmp_path / "run")
  assert convert.import_checkpoint(checkpoint, data_dir, workdir).describe() == "transformer 1x16 (nhead 2, nhid 24)"
  assert isinstance(trained.load(workdir).model, TransformerModel)
  rnn = RNNModel(vocab_size, emsize=16, nhid=16, nlayers=1)
  like = {"params": jax.eval_shape(lambda: rnn.init_params(0))}
  assert user_error(checkpoints.restore, workdir, checkpoints.BEST, like) == (
      f"the checkpoint in {checkpoints.checkpoint_dir(workdir, checkpoints.BEST)} does not match the model (it has "
      "no ['params']['layer_0_b_hh']); use the config it was trained with")
