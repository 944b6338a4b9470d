"""The console scripts as a user runs them: bad input gets one line, exit status 2, no traceback,
and nothing is written; the happy path trains, evaluates and generates."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lm_jax.train import train_and_evaluate
from tests.conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--config=configs/quickstart.py", "--config.data.synthetic.vocab_size=100",
              "--config.data.synthetic.num_classes=6", "--config.data.synthetic.train_tokens=6000",
              "--config.data.synthetic.valid_tokens=1500", "--config.data.synthetic.test_tokens=1500",
              "--config.model.emsize=16", "--config.model.nhid=16", "--config.epochs=1", "--config.batch_size=8"]


def lm_jax(command: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
  module = {"train": "train", "evaluate": "evaluate", "generate": "generate", "import": "import_torch"}[command]
  return subprocess.run([sys.executable, "-m", f"lm_jax.cli.{module}", *args], cwd=ROOT, capture_output=True,
                        text=True, env={**os.environ, **(env or {})}, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
  assert result.returncode == 2, (result.returncode, result.stderr)
  assert "Traceback" not in result.stderr
  error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
  assert len(error_lines) == 1 and re.search(pattern, error_lines[0]), result.stderr


def snapshot(directory) -> dict:
  return {os.path.join(r, f): os.path.getmtime(os.path.join(r, f)) for r, _, files in os.walk(directory) for f in files}


def test_bad_config_value(tmp_path):
  result = lm_jax("train", *TINY_FLAGS, "--config.bptt=0", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"config.bptt must be > 0 \(got 0\); pass --config.bptt=N")
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("flag, message", [
    ("--config.tar_beta=1.0", r"config.tar_beta \(AWD-LSTM's temporal activation regulariser\) reads the model's "
                              r"top_raw_TxBxH, which the transformer family does not provide"),
    ("--config.model.wdrop=0.5", r"config.model.wdrop is not used by the transformer family \(it is rnn's\)"),
])
def test_a_transformer_with_an_rnn_only_option_is_one_line_and_leaves_no_workdir(tmp_path, flag, message):
  result = lm_jax("train", *TINY_FLAGS, "--config.model.kind=transformer", flag, f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, message)
  assert not os.path.exists(tmp_path / "w")


def test_directory_without_splits(tmp_path):
  (tmp_path / "train.txt").write_text("a b\n")
  result = lm_jax("train", "--config=configs/default.py", f"--config.data.dir={tmp_path}", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"lacks valid.txt, test.txt; it needs train.txt, valid.txt and test.txt")
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("flag, message", [
    ("--config.batch_size=4000", r"the train split has \d+ tokens, too few for batch size 4000; use a smaller batch"),
    ("--config.eval_batch_size=1000", r"the valid split has \d+ tokens, too few for batch size 1000; use a smaller"),
])
def test_data_too_short_for_a_batch_leaves_no_workdir(tmp_path, flag, message):
  result = lm_jax("train", *TINY_FLAGS, flag, f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, message)
  assert not os.path.exists(tmp_path / "w")


def test_hub_unreachable_points_to_the_directory_source(tmp_path):
  result = lm_jax("train", "--config=configs/default.py", "--config.data.source=hub", f"--workdir={tmp_path / 'w'}",
                  env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
  assert_one_line_error(result, r"could not load 'wikitext-2' from the Hugging Face Hub .*--config.data.source=dir")


def test_train_evaluate_generate_and_their_errors(tmp_path):
  workdir = tmp_path / "run"
  trained = lm_jax("train", *TINY_FLAGS, f"--workdir={workdir}")
  assert trained.returncode == 0, trained.stderr
  test_ppl = float(re.search(r"test ppl +([\d.]+)", trained.stdout).group(1))
  evaluated = lm_jax("evaluate", f"--workdir={workdir}")
  assert evaluated.returncode == 0, evaluated.stderr
  assert float(re.search(r"test ppl +([\d.]+)", evaluated.stdout).group(1)) == pytest.approx(test_ppl, rel=1e-4)

  output = tmp_path / "sample.txt"
  generated = lm_jax("generate", f"--workdir={workdir}", "--words=45", f"--output={output}")
  assert generated.returncode == 0, generated.stderr
  lines = output.read_text().splitlines()
  assert [len(line.split()) for line in lines] == [20, 20, 5]
  samples = tmp_path / "samples.txt"
  generated = lm_jax("generate", f"--workdir={workdir}", "--words=45", "--num_samples=3", f"--output={samples}")
  assert generated.returncode == 0, generated.stderr
  blocks = samples.read_text().split("\n\n")  # one block per sample, the first the single sample's
  assert [[len(line.split()) for line in block.splitlines()] for block in blocks] == [[20, 20, 5]] * 3
  assert blocks[0] + "\n" == output.read_text() and len(set(blocks)) == 3

  before = {**snapshot(workdir), "sample": output.stat().st_mtime}
  assert_one_line_error(lm_jax("generate", f"--workdir={workdir}", "--temperature=0", f"--output={output}"),
                        r"--temperature must be > 0 \(got 0.0\)")
  assert_one_line_error(lm_jax("generate", f"--workdir={workdir}", "--num_samples=0", f"--output={output}"),
                        r"--num_samples must be > 0 \(got 0\); pass e.g. --num_samples=4")
  assert_one_line_error(lm_jax("generate", f"--workdir={workdir}", "--prompt=zzzz", f"--output={output}"),
                        r"words \['zzzz'\] are not in the vocabulary and it has no <unk>")
  assert_one_line_error(lm_jax("train", *TINY_FLAGS, "--config.model.nhid=32", f"--workdir={workdir}"),
                        r"already holds a run; pass --resume to continue it, --overwrite to replace it")
  assert_one_line_error(lm_jax("train", *TINY_FLAGS, "--config.model.cell=lsmt", f"--workdir={workdir}"),
                        r"unknown cell 'lsmt'; use one of lstm, gru, rnn_tanh, rnn_relu")
  assert_one_line_error(lm_jax("train", *TINY_FLAGS, "--config.model.dropouti=0.3", f"--workdir={workdir}"),
                        r"config.model.dropouti is AWD-LSTM's locked dropout; pass --config.model.locked_dropout=True")
  other = tmp_path / "other"
  other.mkdir()
  for split in ("train", "valid", "test"):
    (other / f"{split}.txt").write_text("some other words\n")
  assert_one_line_error(lm_jax("evaluate", f"--workdir={workdir}", f"--data_dir={other}"),
                        r"the data's vocabulary \(4 words\) is not the checkpoint's")
  (other / "valid.txt").write_bytes(b"caf\xe9\n")
  assert_one_line_error(lm_jax("evaluate", f"--workdir={workdir}", f"--data_dir={other}"),
                        r"valid.txt is not UTF-8 text \(bad byte at line 1\)")
  assert_one_line_error(lm_jax("evaluate", f"--workdir={tmp_path / 'none'}"), r"no best checkpoint in .*train a model")
  assert {**snapshot(workdir), "sample": output.stat().st_mtime} == before


def test_prompt_words_missing_from_the_vocabulary_become_unk(tmp_path):
  (tmp_path / "data").mkdir()
  for split in ("train", "valid", "test"):
    (tmp_path / "data" / f"{split}.txt").write_text("the <unk> cat sat\nthe dog sat\n" * 30)
  c = tiny_config(epochs=1)
  c.data.update(source="dir", dir=str(tmp_path / "data"))
  train_and_evaluate(c, str(tmp_path / "run"))
  result = lm_jax("generate", f"--workdir={tmp_path / 'run'}", "--words=5", "--prompt=the zebra")
  assert result.returncode == 0, result.stderr
  assert "prompt words not in the vocabulary, read as <unk>: zebra" in result.stderr
  assert len(result.stdout.split()) == 5


def console_script(command: str) -> str:
  """The installed entry point (`lm-jax-train`, ...): under `python -m` absl finds the flags anyway."""
  return os.path.join(os.path.dirname(sys.executable), f"lm-jax-{command}")


@pytest.mark.parametrize("command, own_flags", [
    ("train", ["--config", "--workdir", "--[no]resume", "--[no]overwrite", "--[no]distributed",
               "--coordinator_address", "--num_processes", "--process_id"]),
    ("evaluate", ["--workdir", "--split", "--data_dir", "--batch_size", "--cache_preset", "--cache_window",
                  "--cache_theta", "--cache_lambda", "--[no]cache_search", "--[no]dynamic_eval", "--dynamic_rule",
                  "--dynamic_lr", "--dynamic_lamb", "--dynamic_epsilon", "--dynamic_bptt", "--dynamic_stats_batch",
                  "--dynamic_stats_segments"]),
    ("generate", ["--workdir", "--words", "--temperature", "--top_k", "--prompt", "--seed", "--output",
                  "--num_samples"]),
    ("import", ["--checkpoint", "--data_dir", "--workdir", "--cell", "--nhead", "--[no]overwrite"]),
    ("sweep", ["--config", "--grid", "--zip", "--set", "--task", "--workdir", "--parallel", "--[no]print_commands",
               "--report"]),
])
def test_help_lists_the_commands_own_flags(command, own_flags):
  result = subprocess.run([console_script(command), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert "Traceback" not in result.stderr
  listed = re.findall(r"^  (--\S+?):", result.stdout, flags=re.MULTILINE)
  assert sorted(listed) == sorted(own_flags), result.stdout
  assert result.stdout.startswith(f"lm-jax-{command}: ")  # the command's own description first
  if command == "train":
    assert "lm_jax/config.py" in result.stdout and "configs/*.py" in result.stdout


def test_config_file_that_does_not_exist(tmp_path):
  result = lm_jax("train", "--config=no/such/file.py", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"cannot load --config=no/such/file.py \(no such file\); pass a config file such as "
                        r"configs/default.py$")
  assert not os.path.exists(tmp_path / "w")


def test_override_of_a_field_the_config_lacks(tmp_path):
  result = lm_jax("train", "--config=configs/default.py", "--config.model.hiddn=3", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"--config.model.hiddn: the config has no field 'hiddn'; fix the name \(the fields "
                        r"are described in lm_jax/config.py\)$")
  result = lm_jax("train", "--config=configs/default.py", "--config.modle.nhid=3", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"--config.modle.nhid: the config has no field 'modle' \(did you mean model\?\)")
  assert not os.path.exists(tmp_path / "w")


def test_config_file_that_sets_a_field_the_config_lacks(tmp_path):
  (tmp_path / "typo.py").write_text("from lm_jax.config import reference_config\n\n"
                                    "def get_config():\n  c = reference_config()\n  c.model.hidn = 3\n  return c\n")
  result = lm_jax("train", f"--config={tmp_path / 'typo.py'}", f"--workdir={tmp_path / 'w'}")
  assert_one_line_error(result, r"config file .*typo.py sets 'hidn', which is not a config field \(did you mean "
                        r"nhid\?\); fix the name \(the fields are described in lm_jax/config.py\)$")
  assert not os.path.exists(tmp_path / "w")
