"""lm-jax-sweep on the synthetic corpus: a 2x2 grid runs, each run in a workdir of its own; a finished run
is never run again, also after the sweep was stopped (SIGTERM) or killed (SIGKILL), and the others resume;
a failed run is reported while the others finish; the report's numbers are the runs' metrics.jsonl; bad
input is one line and writes nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys

import pytest

from lm_jax import config_file as config_files, metrics, sweep as sweep_lib, sweep_report, sweep_runner
from lm_jax.errors import UserError
from tests.conftest import wait_until
from tests.test_cli import assert_one_line_error, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300
# Every run trains the same tiny model (seed, lr and batch size leave the compiled programs alone): with
# JAX's compilation cache, only the first run compiles.
TINY_CONFIG = "from tests.conftest import tiny_config\n\n\ndef get_config():\n  return tiny_config(epochs=1)\n"
GRID = "seed=1,2;optim.lr=10,20"
RUNS = {"seed=1,lr=10": ("1", "10"), "seed=1,lr=20": ("1", "20"), "seed=2,lr=10": ("2", "10"),
        "seed=2,lr=20": ("2", "20")}  # name: the values of seed and optim.lr
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
PARALLEL = min(2, len(CORES))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
  cache = str(tmp_path_factory.mktemp("compilation_cache"))
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp("config") / "tiny.py"
  path.write_text(TINY_CONFIG)
  return str(path)


def lm_jax_sweep(*args: str, env: dict) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "lm_jax.cli.sweep", *args], cwd=ROOT, capture_output=True, text=True,
                        env=env, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, config_file, env) -> tuple[str, subprocess.CompletedProcess]:
  workdir = str(tmp_path_factory.mktemp("grid") / "sweep")
  result = lm_jax_sweep(f"--config={config_file}", f"--grid={GRID}", "--set=log_interval=25;epochs=3",
                        f"--workdir={workdir}", f"--parallel={PARALLEL}", env=env)
  return workdir, result


def test_a_2x2_grid_runs_every_combination_in_a_workdir_of_its_own(grid_sweep):
  workdir, result = grid_sweep
  assert result.returncode == 0, result.stderr[-3000:]
  assert "4 finished" in result.stdout
  with open(os.path.join(workdir, "sweep.json")) as f:
    assert [run["name"] for run in json.load(f)["runs"]] == list(RUNS)
  for name, (seed, lr) in RUNS.items():
    with open(os.path.join(workdir, name, "config.json")) as f:
      config = json.load(f)
    assert (config["seed"], config["optim"]["lr"]) == (int(seed), float(lr))
    assert (config["log_interval"], config["epochs"]) == (25, 3)  # --set
    assert sweep_runner.final_result(os.path.join(workdir, name)) is not None
  if hasattr(os, "sched_setaffinity"):  # the runs at once had disjoint cores, all of them together
    slots = [cores(text) for text in set(re.findall(r"started on cores (\S+) ", result.stdout))]
    assert len(slots) == PARALLEL and sorted(c for slot in slots for c in slot) == CORES


def cores(text: str) -> set[int]:
  """'0-2,5' -> {0, 1, 2, 5}."""
  ranges = [part.split("-") for part in text.split(",")]
  return {core for r in ranges for core in range(int(r[0]), int(r[-1]) + 1)}


def test_running_a_finished_sweep_again_runs_nothing(grid_sweep, config_file, env):
  workdir, _ = grid_sweep
  before = snapshot(workdir)
  again = lm_jax_sweep(f"--config={config_file}", f"--grid={GRID}", "--set=log_interval=25;epochs=3",
                       f"--workdir={workdir}", env=env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("finished earlier, skipped") == 4 and "started" not in again.stdout
  assert snapshot(workdir) == before


def test_report_holds_each_runs_metrics(grid_sweep, env):
  workdir, _ = grid_sweep
  result = lm_jax_sweep(f"--report={workdir}", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "report.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [row["run"] for row in rows] == list(RUNS)
  for row in rows:
    records = metrics.read_records(os.path.join(workdir, row["run"]))
    final = [r for r in records if "test_ppl" in r][-1]
    epochs = [r for r in records if "epoch" in r]
    assert (row["seed"], row["optim.lr"], row["state"]) == (*RUNS[row["run"]], "finished")
    assert float(row["best_valid_ppl"]) == final["valid_ppl"] and float(row["test_ppl"]) == final["test_ppl"]
    assert float(row["train_ppl"]) == epochs[-1]["epoch_train_ppl"]
    assert float(row["seconds_per_epoch"]) == statistics.median(e["epoch_seconds"] for e in epochs)
    assert float(row["tokens_per_second"]) == statistics.median(e["tokens_per_second"] for e in epochs)
    assert int(row["params"]) == epochs[-1]["num_params"] and int(row["epochs"]) == len(epochs) == 3
    assert f"| {row['run']} | {row['seed']} | {row['optim.lr']} | finished |" in result.stdout
    assert f"| {final['test_ppl']:.2f} |" in result.stdout
  for plot in ("valid_ppl_per_epoch.png", "test_ppl_vs_seed.png", "test_ppl_vs_optim.lr.png", "seconds_per_epoch.png"):
    with open(os.path.join(workdir, plot), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", plot


def read(path: str) -> str:
  with open(path) as f:
    return f.read()


def has_ended(pid: int) -> bool:
  """Gone, or a zombie nobody reaped yet."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] == "Z"
  except FileNotFoundError:
    return True


def signal_sweep_once_its_last_run_trains(args: list[str], env: dict, sig: signal.Signals,
                                          last_run_log: str) -> tuple[str, int, int]:
  """lm-jax-sweep with `args`, sent `sig` once its last run logs a first train step (anew). Returns the sweep's
  output, its exit status, and the last run's pid."""
  steps_before = read(last_run_log).count("first train step") if os.path.exists(last_run_log) else 0
  sweep = subprocess.Popen([sys.executable, "-m", "lm_jax.cli.sweep", *args], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)
  try:
    lines = []
    for line in sweep.stdout:
      lines.append(line)
      if line.startswith("| [3/3]") and ": started" in line:
        break
    assert lines and ": started" in lines[-1], "".join(lines)
    wait_until(lambda: read(last_run_log).count("first train step") > steps_before, "the last run trains", TIMEOUT_S)
    sweep.send_signal(sig)
    rest, _ = sweep.communicate(timeout=TIMEOUT_S)
  finally:
    sweep.kill()
  return "".join(lines) + rest, sweep.returncode, int(re.search(r"\(pid (\d+)\)", lines[-1]).group(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the runs die with the sweep on Linux only")
def test_a_stopped_or_killed_sweep_resumes_without_rerunning_finished_runs_and_a_failed_run_lets_the_others_finish(
    tmp_path, config_file, env):
  workdir = str(tmp_path / "sweep")
  args = [f"--config={config_file}", "--zip=batch_size=8,100000,8;seed=1,1,2", "--set=epochs=2", f"--workdir={workdir}"]
  good, bad, last = "batch_size=8,seed=1", "batch_size=100000,seed=1", "batch_size=8,seed=2"
  log = os.path.join(workdir, last, sweep_runner.LOG_FILE)

  # SIGKILL: the sweep cannot pass anything on, yet its last run stops at a checkpoint and does not outlive it.
  output, _, pid = signal_sweep_once_its_last_run_trains(args, env, signal.SIGKILL, log)
  assert re.search(rf"^\| \[1/3\] {good}: finished in [\d.]+s: test ppl [\d.]+$", output, re.M), output
  assert re.search(rf"^\| \[2/3\] {bad}: failed in [\d.]+s \(exit status 2\): train.py: error: the train split has "
                   r"\d+ tokens, too few for batch size 100000; use a smaller batch size or more data$", output, re.M), output
  wait_until(lambda: has_ended(pid), "the last run has stopped", TIMEOUT_S)
  assert read(log).count("stopped by SIGTERM") == 1
  assert sweep_runner.final_result(os.path.join(workdir, last)) is None
  finished_before = snapshot(os.path.join(workdir, good))

  # SIGTERM (or Ctrl-C): the sweep passes it on, waits for the run's checkpoint, and says how to continue.
  output, status, _ = signal_sweep_once_its_last_run_trains(args, env, signal.SIGTERM, log)
  assert status == 143, output
  assert f"| [1/3] {good}: finished earlier, skipped" in output
  assert re.search(rf"^\| \[3/3\] {last}: stopped in [\d.]+s$", output, re.M), output
  assert read(log).count("stopped by SIGTERM") == 2

  result = lm_jax_sweep(*args, env=env)
  assert result.returncode == 1, result.stderr[-3000:]
  assert f"| [1/3] {good}: finished earlier, skipped" in result.stdout
  assert re.search(rf"^\| \[3/3\] {last}: finished in", result.stdout, re.M), result.stdout
  assert len(re.findall(r"^\| resuming after epoch \d", read(log), re.M)) == 2
  assert result.stderr.strip().splitlines()[-1] == (f"sweep.py: 1 of 3 runs failed ({bad}); see their train.log in "
                                                    f"{workdir}, then run the same command to retry them")
  assert snapshot(os.path.join(workdir, good)) == finished_before
  _, results = sweep_report.collect(workdir)
  assert [r.state for r in results] == ["finished", "failed (exit status 2)", "finished"]


def test_print_commands_records_the_sweep_and_prints_one_train_command_per_run(tmp_path, env):
  workdir = str(tmp_path / "sweep")
  result = lm_jax_sweep("--config=configs/quickstart.py", "--grid=model.cell=lstm,gru", "--zip=seed=1,2;bptt=20,35",
                        "--set=optim.schedule=when;optim.when=(1,2)", f"--workdir={workdir}", "--print_commands", env=env)
  assert result.returncode == 0, result.stderr
  expected = [(cell, seed, bptt) for cell in ("lstm", "gru") for seed, bptt in (("1", "20"), ("2", "35"))]
  commands = [shlex.split(line) for line in result.stdout.splitlines()]
  assert commands == [["lm-jax-train", "--config=configs/quickstart.py", "--config.optim.schedule=when",
                       "--config.optim.when=(1,2)",
                       f"--config.model.cell={cell}", f"--config.seed={seed}", f"--config.bptt={bptt}",
                       f"--workdir={workdir}/cell={cell},seed={seed},bptt={bptt}", "--resume"]
                      for cell, seed, bptt in expected]
  assert os.listdir(workdir) == ["sweep.json"]  # nothing ran


def plan(grid: str = "", zipped: str = "", fixed: str = "") -> sweep_lib.Sweep:
  return sweep_lib.plan("configs/quickstart.py", grid, zipped, fixed)


def test_grid_then_zip_rows_and_values_read_as_config_overrides():
  sweep = plan("model.cell=lstm,gru;optim.when=(1,2),(3,)", "model.emsize=8,16;model.nhid=8,16", "optim.schedule=when")
  assert [run.varied for run in sweep.runs()[:3]] == [
      (("model.cell", "lstm"), ("optim.when", "(1,2)"), ("model.emsize", "8"), ("model.nhid", "8")),
      (("model.cell", "lstm"), ("optim.when", "(1,2)"), ("model.emsize", "16"), ("model.nhid", "16")),
      (("model.cell", "lstm"), ("optim.when", "(3,)"), ("model.emsize", "8"), ("model.nhid", "8"))]
  assert len(sweep.runs()) == 8 and sweep.runs()[0].name == "cell=lstm,when=_1,2_,emsize=8,nhid=8"
  assert sweep_lib.Sweep.from_json(sweep.to_json()) == sweep
  # Two varied fields with one last part are named in full.
  assert plan("seed=1,2;data.synthetic.seed=3,4").runs()[0].name == "seed=1,data.synthetic.seed=3"


def test_two_quotes_list_the_empty_string():
  sweep = plan(zipped='model.pretrained_embeddings="",vectors.txt;model.freeze_embeddings=False,True')
  runs = sweep.runs()
  assert [sweep.overrides(run)[0] for run in runs] == ["--config.model.pretrained_embeddings=",
                                                       "--config.model.pretrained_embeddings=vectors.txt"]
  assert runs[0].name == "pretrained_embeddings=__,freeze_embeddings=False"
  assert config_files.load(sweep.config, sweep.overrides(runs[0])).model.pretrained_embeddings == ""


@pytest.mark.parametrize("grid, zipped, fixed, message", [
    ("model.cell", "", "", r"^--grid: 'model.cell' is not FIELD=VALUES; separate fields with ';' and values with ','"),
    ("model.cell=lstm,,gru", "", "", r"^--grid: model.cell=lstm,,gru has an empty value"),
    ("model.cell=lstm,lstm", "", "", r"^--grid: model.cell lists a value twice"),
    ("", "model.emsize=8,16;model.nhid=8", "", r"^--zip lists have different lengths \(model.emsize: 2, model.nhid: 1\)"),
    ("model.hiddn=1,2", "", "", r"^--grid names model.hiddn, which is not a config field \(did you mean model.nhid\?\)"),
    ("model", "", "", r"^--grid: 'model' is not FIELD=VALUES"),
    ("model=1,2", "", "", r"^--grid names model, which is not a config field"),
    ("", "", "epochs=1", r"^nothing to sweep: pass --grid or --zip"),
    ("epochs=1,2", "", "epochs=3", r"^epochs is given in both --grid and --set"),
    ("model.nlayers=1,x", "", "", r"^run nlayers=x: flag --config.model.nlayers=x: invalid literal for int\(\)"),
    ("bptt=0,10", "", "", r"^run bptt=0: config.bptt must be > 0 \(got 0\)"),
    ("data.dir=a/b,a_b", "", "", r"^two runs would share the directory 'dir=a_b'"),
])
def test_bad_sweep_is_one_user_error(grid, zipped, fixed, message):
  with pytest.raises(UserError, match=message):
    plan(grid, zipped, fixed)


def test_an_unknown_task_is_one_user_error_and_a_manifest_without_a_task_is_a_language_model_sweep():
  with pytest.raises(UserError, match=r"^unknown task 'speech'; pass --task= one of lm$"):
    sweep_lib.plan("configs/quickstart.py", "model.cell=lstm,gru", task="speech")
  sweep = plan("model.cell=lstm,gru")
  held = json.loads(sweep.to_json())
  assert held["task"] == "lm"
  del held["task"]  # as lm_jax wrote sweep.json before sweeps had tasks
  assert sweep_lib.Sweep.from_json(json.dumps(held)) == sweep


def test_bad_grid_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, env):
  workdir = tmp_path / "sweep"
  assert_one_line_error(lm_jax_sweep("--config=configs/quickstart.py", "--grid=model.cell:lstm,gru",
                                     f"--workdir={workdir}", env=env), r"--grid: 'model.cell:lstm,gru' is not FIELD=")
  assert_one_line_error(lm_jax_sweep("--config=configs/quickstart.py", "--grid=model.cel=lstm,gru",
                                     f"--workdir={workdir}", env=env),
                        r"--grid names model.cel, which is not a config field \(did you mean model.cell\?\)")
  assert not workdir.exists()


def test_a_workdir_holding_another_sweep_or_other_files_is_refused(tmp_path):
  workdir = str(tmp_path / "sweep")
  sweep_lib.claim(plan("model.cell=lstm,gru"), workdir)
  before = snapshot(workdir)
  sweep_lib.claim(plan("model.cell=lstm,gru"), workdir)  # the same sweep: continued
  with pytest.raises(UserError, match=r"--workdir=\S+ holds another sweep \(--grid: 'model.cell=lstm,gru' -> "
                     r"'model.cell=gru,lstm'\); use another --workdir, or that sweep's flags to continue it"):
    sweep_lib.claim(plan("model.cell=gru,lstm"), workdir)
  assert snapshot(workdir) == before
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text("{}")
  with pytest.raises(UserError, match=r"holds files but no sweep.json; pass a new or empty directory"):
    sweep_lib.claim(plan("model.cell=lstm,gru"), str(tmp_path / "run"))


def test_parallel_beyond_the_cores_is_a_user_error():
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
  if cores is None:
    pytest.skip("no CPU affinity on this platform")
  with pytest.raises(UserError, match=rf"--parallel={cores + 1} is more than the {cores} CPU cores"):
    sweep_runner.cpu_slots(cores + 1)
  slots = sweep_runner.cpu_slots(cores)
  assert sorted(c for slot in slots for c in slot) == sorted(os.sched_getaffinity(0))
