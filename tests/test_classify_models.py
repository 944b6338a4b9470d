"""The classifier families (lm_jax/classify/models) against float64 NumPy and the PyTorch references
(torch_reference/kim_cnn.py, rnn_classifiers.py): logits, every gradient, Kim's Adadelta + max-norm over 20
steps, masked pooling, the recurrent readouts over each row's real tokens, frozen embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lm_jax.classify.models import FAMILIES, model_from_config, validate
from lm_jax.classify.models.pooling import masked_max, masked_mean, max_pool
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS
from tests.test_cells import numpy_step

V, C = 23, 3
LENGTHS = (7, 4, 2, 1)  # a full row, and rows shorter than Kim's widest filter (5)


def build(kind: str, **fields):
  return model_from_config(ml_collections.ConfigDict(dict(kind=kind, **fields)), V, C)


def random_params(model, seed: int, scale: float = 0.3) -> dict[str, jax.Array]:
  """Every parameter random (the zero-initialised output layer too, so that every gradient is non-zero)."""
  rng = np.random.default_rng(seed)
  return {name: jnp.asarray(scale * rng.standard_normal(value.shape), jnp.float32)
          for name, value in model.init_params(seed).items()}


def batch(lengths=LENGTHS, steps: int | None = None, seed: int = 0):
  """Right-padded tokens with random ids in the padding too (the model must ignore them), the mask, labels."""
  rng = np.random.default_rng(seed)
  steps = steps or max(lengths)
  tokens_BxT = rng.integers(V, size=(len(lengths), steps)).astype(np.int32)
  mask_BxT = np.arange(steps)[None, :] < np.array(lengths)[:, None]
  return tokens_BxT, mask_BxT, rng.integers(C, size=len(lengths))


def jax_loss(model, params, tokens_BxT, mask_BxT, labels_B, keep_BxD=None):
  logits_BxC = model.logits(params, tokens_BxT, mask_BxT, train=keep_BxD is not None, keep_BxD=keep_BxD)
  return -jnp.mean(jax.nn.log_softmax(logits_BxC)[jnp.arange(len(labels_B)), labels_B]), logits_BxC


# One compiled program per model and shapes (op by op, each small operation would compile on its own).
loss_logits_and_grads = jax.jit(jax.value_and_grad(jax_loss, argnums=1, has_aux=True), static_argnums=0)
logits = jax.jit(lambda model, params, tokens_BxT, mask_BxT: model.logits(params, tokens_BxT, mask_BxT),
                 static_argnums=0)


def torch_loss_and_grads(torch, reference, params, tokens_BxT, mask_BxT, labels_B, keep_BxD=None):
  """The reference's mean cross-entropy and the gradient of every parameter, frozen ones included."""
  reference.load_params(params)
  for parameter in reference.parameters():
    parameter.requires_grad_(True)
    parameter.grad = None
  reference.train(keep_BxD is not None)
  keep = None if keep_BxD is None else torch.from_numpy(np.asarray(keep_BxD))
  logits = reference(torch.from_numpy(tokens_BxT).long(), torch.from_numpy(mask_BxT), keep)
  loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels_B).long())
  loss.backward()
  return logits.detach().numpy(), loss.item(), reference.grads_as_jax()


def assert_matches_torch(torch, model, reference, params, tokens_BxT, mask_BxT, labels_B, keep_BxD=None):
  logits, loss, grads = torch_loss_and_grads(torch, reference, params, tokens_BxT, mask_BxT, labels_B, keep_BxD)
  (jax_value, jax_logits), jax_grads = loss_logits_and_grads(model, params, tokens_BxT, mask_BxT, labels_B, keep_BxD)
  np.testing.assert_allclose(jax_logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax_value, loss, rtol=1e-5)
  assert set(grads) == set(jax_grads)
  for name in grads:
    np.testing.assert_allclose(jax_grads[name], grads[name], rtol=1e-5, atol=1e-5, err_msg=name)


# ---- pooling


def numpy_pool(x_BxTxH: np.ndarray, mask_BxT: np.ndarray, reduce) -> np.ndarray:
  return np.stack([reduce(x[m], axis=0) if m.any() else np.zeros(x.shape[-1]) for x, m in zip(x_BxTxH, mask_BxT)])


@pytest.mark.parametrize("layout", ["right", "anywhere"])
def test_masked_max_and_mean_match_numpy(layout):
  """Max and mean over the real positions only, whatever the padding holds; all-real and all-padding rows."""
  rng = np.random.default_rng(0)
  x_BxTxH = rng.standard_normal((5, 6, 3)).astype(np.float32)
  x_BxTxH[:, -2:] = 100.0  # padding with large values must not win the max
  if layout == "right":
    mask_BxT = np.arange(6)[None, :] < np.array([6, 4, 3, 1, 0])[:, None]
  else:
    mask_BxT = rng.random((5, 6)) < 0.5
    mask_BxT[0], mask_BxT[1] = True, False
  x64 = x_BxTxH.astype(np.float64)
  np.testing.assert_array_equal(masked_max(x_BxTxH, mask_BxT), numpy_pool(x64, mask_BxT, np.max))
  np.testing.assert_allclose(masked_mean(x_BxTxH, mask_BxT), numpy_pool(x64, mask_BxT, np.mean), rtol=1e-6)


def test_max_pool_over_groups_of_real_steps():
  """Groups of 2 steps (the last one short: T = 7), each the max of its real steps; a group is real if any is."""
  rng = np.random.default_rng(1)
  x_BxTxH = rng.standard_normal((3, 7, 2)).astype(np.float32)
  mask_BxT = np.arange(7)[None, :] < np.array([7, 3, 0])[:, None]
  pooled, pooled_mask = max_pool(x_BxTxH, mask_BxT, 2)
  groups = [(x_BxTxH[:, i:i + 2], mask_BxT[:, i:i + 2]) for i in range(0, 7, 2)]
  expected = np.stack([numpy_pool(x.astype(np.float64), m, np.max) for x, m in groups], axis=1)
  np.testing.assert_array_equal(pooled, expected)
  np.testing.assert_array_equal(pooled_mask, [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_a_row_without_real_tokens_has_finite_gradients():
  """A filler row (mask all False) pools to 0 and leaves the other rows' gradients finite."""
  mask_BxT = np.array([[True, True, False], [False, False, False]])
  pooled = jax.jit(lambda x: jnp.stack([masked_max(x, mask_BxT), masked_mean(x, mask_BxT)]))(jnp.ones((2, 3, 2)))
  np.testing.assert_array_equal(pooled, [[[1, 1], [0, 0]], [[1, 1], [0, 0]]])
  grad = jax.jit(jax.grad(lambda x: jnp.sum(masked_max(x, mask_BxT)) + jnp.sum(masked_mean(x, mask_BxT))))(
      jnp.ones((2, 3, 2)))
  np.testing.assert_array_equal(grad[1], 0.0)
  assert np.isfinite(grad).all()


# ---- Kim's CNN


def test_cnn_pools_each_filter_over_the_sentences_own_windows():
  """Against float64 NumPy: each unpadded sentence with w - 1 zero rows on each side, every window, max, + b, ReLU.
  Positive vectors, negative filters and positive biases make every real window negative, so a window of
  padding alone (value b) would win the max if it were counted."""
  model = build("cnn", emsize=3, filter_widths=(2, 5), filter_maps=3)
  rng = np.random.default_rng(11)
  params = {**model.init_params(0), "embedding": jnp.asarray(rng.uniform(0.1, 1.0, (V, 3)), jnp.float32)}
  for i, width in enumerate(model.filter_widths):
    params[f"conv_{i}_weight"] = jnp.asarray(rng.uniform(-1.0, -0.1, (width, 3, 3)), jnp.float32)
    params[f"conv_{i}_bias"] = jnp.asarray(rng.uniform(0.5, 1.0, 3), jnp.float32)
  tokens_BxT, mask_BxT, _ = batch(steps=9)
  features = jax.jit(lambda p: model.features(p, model.embed(p, tokens_BxT, mask_BxT), mask_BxT))(params)
  as64 = lambda name: np.asarray(params[name], np.float64)
  for row, (tokens, mask) in enumerate(zip(tokens_BxT, mask_BxT)):
    expected = []
    for i, width in enumerate(model.filter_widths):
      x = np.pad(as64("embedding")[tokens[mask]], ((width - 1, width - 1), (0, 0)))
      windows = [sum(x[t + k] @ as64(f"conv_{i}_weight")[k] for k in range(width)) for t in range(len(x) - width + 1)]
      expected.append(np.maximum(np.max(windows, axis=0) + as64(f"conv_{i}_bias"), 0.0))
    np.testing.assert_allclose(features[row], np.concatenate(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("embeddings, train", [("rand", True), ("multichannel", False)])
def test_cnn_logits_and_every_gradient_match_pytorch(embeddings, train):
  """Kim's widths 3, 4, 5 on rows of 7, 4, 2 and 1 tokens; in training with the same dropout mask, in evaluation
  with Kim's 1 - p scaling."""
  kim_cnn = pytest.importorskip("torch_reference.kim_cnn", reason="compares with PyTorch: pip install 'lm_jax[torch]'")
  import torch
  fields = dict(emsize=6, filter_maps=4, embeddings=embeddings)
  model = build("cnn", **fields)
  params = random_params(model, seed=1)
  tokens_BxT, mask_BxT, labels_B = batch()
  keep_BxD = None
  if train:
    keep_BxD = np.random.default_rng(2).integers(2, size=(len(LENGTHS), model.features_size)).astype(np.float32)
  assert_matches_torch(torch, model, kim_cnn.TorchKimCNN(V, C, **fields), params, tokens_BxT, mask_BxT, labels_B,
                       keep_BxD)


@pytest.mark.parametrize("kind, fields", [
    ("cnn", dict(filter_widths=(2, 2, 3, 3, 4), filter_maps=1, dropout=0.0, max_norm=0.0)),  # the brief's IMDB ConvNet
    ("rnn", dict(cell="gru", readout="flatten", max_len=12)),
    ("cnn_rnn", dict(readout="flatten", max_len=12)),
])
def test_a_sentence_scores_the_same_in_any_batch_length(kind, fields):
  """The padding a batch adds (and the ids it holds) never reaches a sentence's logits."""
  model = build(kind, emsize=5, **fields)
  params = random_params(model, seed=3)
  short = batch(lengths=(3, 1), steps=3, seed=4)
  long = batch(lengths=(3, 1), steps=12, seed=5)
  long[0][:, :3] = short[0]
  np.testing.assert_allclose(logits(model, params, long[0], long[1]), logits(model, params, short[0], short[1]),
                             rtol=1e-6, atol=1e-6)


def test_adadelta_and_max_norm_over_20_steps_match_pytorch():
  """optax.adadelta(1, rho 0.95, eps 1e-6) then `constraints`, against torch.optim.Adadelta then Kim's renorm, with
  the same dropout masks, multichannel: the trained channel moves, the frozen one never changes."""
  kim_cnn = pytest.importorskip("torch_reference.kim_cnn", reason="compares with PyTorch: pip install 'lm_jax[torch]'")
  import torch
  fields = dict(emsize=6, filter_maps=4, embeddings="multichannel")
  model = build("cnn", **fields)
  reference = kim_cnn.TorchKimCNN(V, C, **fields)
  params = random_params(model, seed=6)
  # Output columns of norms 5, 2 and 0.5 (the bound is 3): the first is cut at the first step.
  output_weight = np.asarray(params["output_weight"])
  params["output_weight"] = jnp.asarray(output_weight / np.linalg.norm(output_weight, axis=0) * [5.0, 2.0, 0.5])
  reference.load_params(params)
  torch_optimizer = kim_cnn.make_optimizer(reference)

  frozen = model.frozen_params()
  optimizer = optax.chain(optax.masked(optax.set_to_zero(), {name: name in frozen for name in params}),
                          optax.adadelta(1.0, rho=0.95, eps=1e-6))

  @jax.jit
  def step(params, opt_state, tokens_BxT, mask_BxT, labels_B, keep_BxD):
    (loss, _), grads = jax.value_and_grad(jax_loss, argnums=1, has_aux=True)(model, params, tokens_BxT, mask_BxT,
                                                                            labels_B, keep_BxD)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return model.constraints(optax.apply_updates(params, updates)), opt_state, loss

  initial, opt_state = params, optimizer.init(params)
  rng = np.random.default_rng(7)
  for i in range(20):
    tokens_BxT, mask_BxT, labels_B = batch(lengths=rng.integers(1, 8, size=4), steps=7, seed=100 + i)
    keep_BxD = (rng.random((4, model.features_size)) < 0.5).astype(np.float32)
    params, opt_state, loss = step(params, opt_state, tokens_BxT, mask_BxT, labels_B, keep_BxD)
    torch_loss = kim_cnn.train_step(reference, torch_optimizer, torch.from_numpy(tokens_BxT).long(),
                                    torch.from_numpy(mask_BxT), torch.from_numpy(labels_B).long(),
                                    torch.from_numpy(keep_BxD))
    np.testing.assert_allclose(loss, torch_loss, rtol=1e-5)
    if i == 0:  # the column of norm 5 is cut to 3, the others stay below
      norms = np.linalg.norm(params["output_weight"], axis=0)
      np.testing.assert_allclose(norms[0], 3.0, rtol=1e-6)
      assert norms[1] < 3.0 and norms[2] < 3.0
  torch_params = {name: kim_cnn._relayout(p.detach(), layout).numpy() for name, p, layout in reference.jax_pairs()}
  for name, value in params.items():
    np.testing.assert_allclose(value, torch_params[name], rtol=1e-5, atol=1e-5, err_msg=name)
    if name in frozen:
      np.testing.assert_array_equal(value, initial[name])
    else:
      assert not np.allclose(value, initial[name]), name
  assert np.linalg.norm(params["output_weight"], axis=0).max() <= 3.0 + 1e-6


def test_frozen_params_by_variant():
  assert build("cnn").frozen_params() == () == build("rnn", embeddings="non-static").frozen_params()
  assert build("cnn", embeddings="static").frozen_params() == ("embedding",)
  assert build("cnn", embeddings="multichannel").frozen_params() == ("embedding_static",)


def test_multichannel_takes_the_pretrained_vectors_in_both_channels(tmp_path):
  """Kim's multichannel starts both channels from the vectors; words the file lacks keep their random rows."""
  path = tmp_path / "vectors.txt"
  path.write_text("w1 1 2 3\nW2 4 5 6\n")
  model = build("cnn", emsize=3, embeddings="multichannel")
  params = model.init_params(0)
  words = ["w0", "w1", "w2"] + [f"x{i}" for i in range(V - 3)]
  params, matched = model.load_pretrained(params, words, str(path))
  assert (matched.exact, matched.lower) == (1, 0)  # only vocabulary words are lower-cased: W2 matches no w2
  for name in ("embedding", "embedding_static"):
    np.testing.assert_array_equal(params[name][1], [1, 2, 3])
    np.testing.assert_array_equal(params[name][0], model.init_params(0)["embedding"][0])


# ---- the recurrent classifiers


def numpy_final_states(model, params, tokens_BxT, mask_BxT) -> np.ndarray:
  """Each row's real tokens only, run through the stacked cells in float64; the top layer's last h."""
  finals = []
  for tokens, mask in zip(tokens_BxT, mask_BxT):
    x = np.asarray(params["embedding"], np.float64)[tokens[mask]]
    for k in range(model.nlayers):
      w = {name: np.asarray(params[f"layer_{k}_{name}"], np.float64).T for name in ("w_ih", "w_hh")}
      gates = w["w_ih"].shape[0]
      b = {name: np.asarray(params.get(f"layer_{k}_{name}", np.zeros(gates)), np.float64) for name in ("b_ih", "b_hh")}
      state = tuple(np.zeros((1, model.nhid)) for _ in range(CELLS[model.cell].num_states))
      outputs = []
      for x_t in x:
        state = numpy_step(model.cell, x_t[None], state, **w, **b)
        outputs.append(state[0][0])
      x = np.stack(outputs)
    finals.append(x[-1])
  return np.stack(finals)


@pytest.mark.parametrize("cell, bias", [("gru", False), ("lstm", True)])
def test_rnn_final_state_is_the_state_at_each_rows_last_real_token(cell, bias):
  """Two layers over rows of 7, 4, 2 and 1 real tokens: float64 NumPy over the real tokens alone, and nn.GRU/LSTM
  run on each unpadded row."""
  model = build("rnn", emsize=5, cell=cell, nhid=4, nlayers=2, bias=bias, readout="final", hidden=0)
  params = random_params(model, seed=8, scale=0.5)
  tokens_BxT, mask_BxT, _ = batch()
  final_BxH = jax.jit(lambda p: model.features(p, model.embed(p, tokens_BxT, mask_BxT), mask_BxT))(params)
  np.testing.assert_allclose(final_BxH, numpy_final_states(model, params, tokens_BxT, mask_BxT), rtol=1e-5, atol=1e-6)

  rnn_classifiers = pytest.importorskip("torch_reference.rnn_classifiers",
                                        reason="compares with PyTorch: pip install 'lm_jax[torch]'")
  import torch
  reference = rnn_classifiers.TorchRNNClassifier(V, C, emsize=5, cell=cell, nhid=4, nlayers=2, bias=bias,
                                                 readout="final", hidden=0)
  reference.load_params(params)
  for row, (tokens, mask) in enumerate(zip(tokens_BxT, mask_BxT)):
    _, h_n = reference.rnn(reference.embedder.embedding(torch.from_numpy(tokens[mask]).long())[None])
    np.testing.assert_allclose(final_BxH[row], (h_n[0] if cell == "lstm" else h_n)[-1, 0].detach(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("kind, fields", [
    ("rnn", dict(cell="gru", readout="flatten", max_len=9)),  # the brief's GRU classifier, at tiny sizes
    ("rnn", dict(cell="lstm", readout="max", hidden=0, bias=True, embeddings="multichannel")),
    ("cnn_rnn", dict(max_len=9)),  # odd T = 7: the last pooled group is short
    ("cnn_rnn", dict(cell="lstm", readout="mean", hidden=4, hidden_activation="tanh", dropout=0.5)),
])
def test_recurrent_classifiers_logits_and_every_gradient_match_pytorch(kind, fields):
  rnn_classifiers = pytest.importorskip("torch_reference.rnn_classifiers",
                                        reason="compares with PyTorch: pip install 'lm_jax[torch]'")
  import torch
  sizes = dict(emsize=5, nhid=4) | (dict(conv_maps=3) if kind == "cnn_rnn" else {})
  model = build(kind, **sizes, **fields)
  reference_class = rnn_classifiers.TorchCNNRNNClassifier if kind == "cnn_rnn" else rnn_classifiers.TorchRNNClassifier
  reference = reference_class(V, C, **sizes, **fields)
  params = random_params(model, seed=9, scale=0.5)
  tokens_BxT, mask_BxT, labels_B = batch(lengths=(7, 4, 3, 1))
  keep_BxD = None
  if model.dropout:
    keep_BxD = np.random.default_rng(10).integers(2, size=(4, model.features_size)).astype(np.float32)
  assert_matches_torch(torch, model, reference, params, tokens_BxT, mask_BxT, labels_B, keep_BxD)


def test_flatten_refuses_a_batch_longer_than_max_len():
  model = build("rnn", emsize=5, max_len=4)
  tokens_BxT, mask_BxT, _ = batch(lengths=(5,))
  with pytest.raises(UserError, match="max_len=4"):
    logits(model, random_params(model, 0), tokens_BxT, mask_BxT)


# ---- configuration


def test_every_family_builds_from_its_defaults_and_refuses_bad_fields():
  for kind in FAMILIES:
    validate(ml_collections.ConfigDict(dict(kind=kind)))
  bad = [(dict(kind="cnn", nhid=3), "not a field of the 'cnn'"),
         (dict(kind="cnn", embeddings="static"), "pretrained_embeddings=FILE"),
         (dict(kind="rnn", pretrained_embeddings="v.txt"), "embeddings is 'rand'"),
         (dict(kind="cnn", filter_widths=(3, 0)), "filter_widths"),
         (dict(kind="rnn", readout="last"), "readout"),
         (dict(kind="cnn_rnn", cell="mgu"), "cell"),
         (dict(kind="svm"), "unknown classifier kind")]
  for config, message in bad:
    with pytest.raises(UserError, match=message):
      validate(ml_collections.ConfigDict(config))
  model = build("cnn", filter_widths=[2, 3])
  assert hash(model) == hash(build("cnn", filter_widths=(2, 3)))
  assert build(**model.config_fields()) == model
