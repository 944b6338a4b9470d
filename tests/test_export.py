"""lm-jax-export's serving artifact (lm_jax/serving.py), from tiny workdirs of both families: loaded by README.md's
"Serving" lines in a process where lm_jax (and flax, optax, orbax) cannot be imported, its logits are lm_jax's own
model's, scoring in chunks with the state carried at a batch other than README's, and one generation step against
lm_jax's next-word prediction; the manifest states the shapes the programs take; bad requests are one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax import checkpoints, generate, serving, trained
from lm_jax.models.registry import model_from_config
from tests.conftest import tiny_config
from tests.test_cli import ROOT, assert_one_line_error

WORDS = ["<eos>", "the", "meaning", "of", "life"] + [f"w{i}" for i in range(45)]  # README's prompt is in it
MODELS = {  # config.model fields of the tiny workdirs; lm-jax-export's flags, or None: serving.export in process
    # AWD-LSTM's shapes (tied, the last layer smaller) with its dropouts, off at inference, and a scan unrolled
    # twice: the export unrolls once, for any number of steps
    "awd_lstm": ({"nhid": 12, "nlayers": 2, "tied": True, "locked_dropout": True, "dropouti": 0.4, "wdrop": 0.5,
                  "unroll": 2}, None),
    "transformer": ({"kind": "transformer", "nhid": 24, "nlayers": 2}, ["--platforms=cpu,cuda", "--context=12"]),
}
PROMPT = [WORDS.index(w) for w in "the meaning of life".split()]  # README's, at batch 1
TOKENS_BxT = np.random.default_rng(0).integers(len(WORDS), size=(3, 8)).astype(np.int32)
TOKENS_BxT[0, :4] = PROMPT
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}

# Run with -I (no PYTHONPATH, no current directory on the path) outside the repository; lm_jax is also
# pip-installed in the environment, so the names are barred too.
SERVE = textwrap.dedent("""
    import os, sys
    BARRED = ("lm_jax", "flax", "optax", "orbax", "ml_collections", "torch")
    for name in BARRED:
      sys.modules[name] = None  # any import of it now fails
    import numpy as np
    try:
      import lm_jax
      sys.exit("lm_jax imported")
    except ImportError:
      pass
    readme, folders = sys.argv[1], sys.argv[2:]
    for folder in folders:
      os.chdir(folder)
      ran = {}
      exec(readme, ran)
      score, step, weights, manifest = ran["score"], ran["step"], ran["weights"], ran["manifest"]
      tokens = np.load("tokens.npy")
      state = [np.zeros([len(tokens) if d == "batch" else d for d in s["shape"]], s["dtype"])
               for s in manifest["state"]]
      first, state = score.call(weights, tokens[:, :4], state)  # then the rest, with the state carried
      rest, state = score.call(weights, tokens[:, 4:], state)
      np.savez("served.npz", readme_logits=ran["logits"], readme_word=ran["word"], readme_next=ran["next_logits"],
               chunked=np.concatenate([first, rest], 1))
      print(folder, score.platforms, [str(a) for a in score.in_avals[len(weights):]])
    loaded = [name for name, module in sys.modules.items() if module and name.split(".")[0] in BARRED]
    print("served without", loaded or "lm_jax")
""")


class Artifact(NamedTuple):
  model: Any
  params: Any
  folder: Path           # model.jax, and served.npz: what the serving process computed
  logits_BxTxV: np.ndarray  # lm_jax's logits of TOKENS_BxT, as evaluation computes them


def lm_jax_export(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "lm_jax.cli.export", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


def readme_lines() -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    section = f.read().split("## Serving\n", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def initialised_workdir(workdir: str, model_fields: dict) -> str:
  """A workdir whose best checkpoint is a tiny model with every parameter random, as lm-jax-import writes one."""
  config = tiny_config(**{f"model.{name}": value for name, value in model_fields.items()})
  model = model_from_config(config.model, len(WORDS))
  rng = np.random.default_rng(3)
  params = jax.tree.map(lambda like: rng.uniform(-0.5, 0.5, like.shape).astype(np.float32),
                        jax.eval_shape(lambda: model.init_params(0)))
  meta = {"vocab": WORDS, "config": config.to_dict(), "epoch": 1, "val_loss": 4.0}
  checkpoints.save(workdir, checkpoints.BEST, 1, {"params": params}, meta)
  return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Per family its Artifact; and what the serving process printed."""
  pytest.importorskip("flatbuffers", reason="jax.export's serialization needs it (the test extra)")
  root = tmp_path_factory.mktemp("export")
  runs = {}
  for family, (model_fields, flags) in MODELS.items():
    workdir = initialised_workdir(str(root / f"{family}_run"), model_fields)
    folder = root / family
    folder.mkdir()
    run = trained.load(workdir)
    if flags is None:
      (folder / "model.jax").write_bytes(serving.export(run.model, run.params, run.vocab.words, context=12))
    else:
      (folder / "model.jax").write_text("an older export")  # replaced: --overwrite
      written = lm_jax_export(f"--workdir={workdir}", f"--output={folder / 'model.jax'}", "--overwrite", *flags)
      assert written.returncode == 0, written.stderr
      assert re.search(r"\| wrote transformer 2x16 .*, 50 words, best parameters \(epoch 1, valid ppl 54.60\), score "
                       r"and step for cpu,cuda \(0.\d MB\) to .*model.jax", written.stdout), written.stdout
    np.save(folder / "tokens.npy", TOKENS_BxT)
    runs[family] = Artifact(run.model, run.params, folder, model_logits(run.model, run.params, TOKENS_BxT))
  folders = [str(artifact.folder) for artifact in runs.values()]
  served = subprocess.run([sys.executable, "-I", "-c", SERVE, readme_lines(), *folders], cwd=str(root),
                          capture_output=True, text=True, timeout=300)
  assert served.returncode == 0, served.stderr[-3000:]
  assert served.stdout.strip().endswith("served without lm_jax"), served.stdout
  return runs, served.stdout


def model_logits(model, params, tokens_BxT: np.ndarray) -> np.ndarray:
  """lm_jax's logits [B, T, V] for whole texts from the start state, as evaluation computes them."""

  def logits(params, tokens_TxB):
    output = model.features(params, tokens_TxB, model.init_carry(tokens_TxB.shape[1]))
    return model.logits(params, output.features_TxBxH)

  return np.asarray(jax.jit(logits)(params, tokens_BxT.T)).transpose(1, 0, 2)


@pytest.mark.parametrize("family", MODELS)
def test_scoring_in_chunks_with_the_state_carried_gives_the_models_logits(runs, family):
  artifact = runs[0][family]
  served = np.load(artifact.folder / "served.npz")
  assert served["chunked"].shape == (3, 8, len(WORDS))
  np.testing.assert_allclose(served["chunked"], artifact.logits_BxTxV, **TOLERANCE)


@pytest.mark.parametrize("family", MODELS)
def test_readme_lines_score_the_prompt_and_step_as_lm_jax_predicts(runs, family):
  artifact = runs[0][family]
  served = np.load(artifact.folder / "served.npz")
  np.testing.assert_allclose(served["readme_logits"], artifact.logits_BxTxV[:1, :4], **TOLERANCE)  # row 0 opens so
  word = int(served["readme_word"][0])
  assert word == int(np.argmax(served["readme_logits"][0, -1]))
  ids = jnp.asarray(PROMPT + [word])
  np.testing.assert_allclose(jax.nn.log_softmax(served["readme_next"][0]),
                             generate.predict(artifact.model, artifact.params, ids), **TOLERANCE)


def test_the_manifest_states_the_shapes_and_the_programs_take_them(runs):
  shapes = {}
  for family, artifact in runs[0].items():
    with zipfile.ZipFile(artifact.folder / "model.jax") as archive:
      manifest = json.loads(archive.read("manifest.json"))
      assert sorted(archive.namelist()) == ["manifest.json", "score.stablehlo", "step.stablehlo", "weights.npz"]
    assert manifest["vocab"] == WORDS
    assert manifest["score"]["tokens"] == {"shape": ["batch", "steps"], "dtype": "int32"}
    assert manifest["score"]["logits"] == {"shape": ["batch", "steps", 50], "dtype": "float32"}
    assert manifest["step"]["token"] == {"shape": ["batch"], "dtype": "int32"}
    assert manifest["step"]["logits"] == {"shape": ["batch", 50], "dtype": "float32"}
    shapes[family] = (manifest["platforms"], [(s["name"], s["shape"], s["dtype"]) for s in manifest["state"]],
                      manifest.get("checkpoint", {}).get("epoch"))
  inner, last = [["batch", 12], "float32"], [["batch", 16], "float32"]  # h and c per layer
  cache = [["batch", 12, 16], "float32"]
  assert shapes == {
      "awd_lstm": (["cpu"], [("0/0", *inner), ("0/1", *inner), ("1/0", *last), ("1/1", *last)], None),
      "transformer": (["cpu", "cuda"], [("keys/0", *cache), ("keys/1", *cache), ("values/0", *cache),
                                        ("values/1", *cache), ("position_B", ["batch"], "int32")], 1)}
  # What the deserialized programs report, in the process without lm_jax: the same platforms and shapes.
  assert "awd_lstm ('cpu',) ['int32[batch,steps]', 'float32[batch,12]'" in runs[1]
  assert "transformer ('cpu', 'cuda') ['int32[batch,steps]', 'float32[batch,12,16]'" in runs[1]


@pytest.mark.parametrize("args, message", [
    (["--workdir={tmp}/empty", "--output={tmp}/model.jax"], r"no best checkpoint in .*/empty/checkpoints/best; train"),
    (["--workdir={tmp}/empty", "--output={tmp}/exists.jax"], r"--output=.*/exists.jax already exists; pass --overwr"),
    (["--workdir={tmp}/empty", "--output={tmp}/exists.pt"], r"--output=.*/exists.pt already exists; pass --overwrite"),
    (["--workdir={tmp}/empty", "--output={tmp}/none/model.jax"], r"folder .*/none does not exist; create it"),
    (["--workdir={tmp}/empty", "--output={tmp}/model.jax", "--platforms=cpu,gpu"], r"gpu; use some of cpu,cuda,rocm,"),
    (["--workdir={tmp}/empty", "--output={tmp}/model.jax", "--reference=awd-lstm-lm"], r"--reference is for a PyTorch"),
    (["--workdir={tmp}/empty", "--output={tmp}/model.pt", "--context=8"], r"--context is for a .jax --output, not"),
])
def test_bad_requests_are_one_line_and_write_nothing(tmp_path, args, message):
  (tmp_path / "empty").mkdir()
  for name in ("exists.jax", "exists.pt"):
    (tmp_path / name).write_text("kept")
  before = sorted(os.listdir(tmp_path))
  assert_one_line_error(lm_jax_export(*(arg.format(tmp=tmp_path) for arg in args)), message)
  assert sorted(os.listdir(tmp_path)) == before and not os.listdir(tmp_path / "empty")
  assert (tmp_path / "exists.jax").read_text() == "kept"
