"""Runs a planned sweep on this machine: each run an lm-jax-train process (resumable, its output in
`<run>/train.log`), one after another or N at a time on disjoint sets of CPU cores. A finished run is
skipped; a failed run is reported and the others go on; SIGINT or SIGTERM stops every run at a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Callable

from lm_jax import child_process, metrics, tasks
from lm_jax.errors import UserError
from lm_jax.sweep import Run, Sweep
from lm_jax.workdir import write_atomically

LOG_FILE = "train.log"
STATUS_FILE = "run_status.json"  # how the run's last process ended, for the report
POLL_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class Outcome:
  run: Run
  state: str             # 'finished', 'finished earlier', 'failed', 'stopped' (by SIGINT/SIGTERM) or 'not started'
  exit_status: int | None = None
  note: str = ""         # finished: its test ppl; failed: the last line of its log

  @property
  def detail(self) -> str:
    if self.state == "failed":
      return f" (exit status {self.exit_status}): {self.note}"
    return f": {self.note}" if self.note else ""


@dataclasses.dataclass(frozen=True)
class _Running:
  run: Run
  process: subprocess.Popen
  cores: frozenset[int] | None
  start: float


def final_result(run_dir: str) -> dict | None:
  """The run's final metrics record (its best model's valid and test results; lm_jax/train.py writes it
  last), None while it has none."""
  return next((record for record in reversed(metrics.read_records(run_dir)) if "test_ppl" in record), None)


def cpu_slots(parallel: int) -> list[frozenset[int] | None]:
  """`parallel` disjoint sets of the CPU cores this process may use, one per concurrent run (None each where
  the platform cannot pin a process to cores). Raises UserError for a count the cores cannot hold."""
  if parallel < 1:
    raise UserError(f"--parallel must be >= 1 (got {parallel}); pass the number of runs at once")
  if not hasattr(os, "sched_setaffinity"):
    return [None] * parallel
  cpus = sorted(os.sched_getaffinity(0))
  if parallel > len(cpus):
    raise UserError(f"--parallel={parallel} is more than the {len(cpus)} CPU cores this process may use; pass at "
                    f"most --parallel={len(cpus)}")
  return [frozenset(cpus[i * len(cpus) // parallel:(i + 1) * len(cpus) // parallel]) for i in range(parallel)]


def run_sweep(sweep: Sweep, workdir: str, slots: list[frozenset[int] | None],
              say: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[Outcome]:
  """Runs every unfinished run of `sweep` in `workdir`, len(slots) at a time, each pinned to its slot's cores.
  Returns one Outcome per run, in the sweep's order."""
  runs = sweep.runs()
  label = {run.name: f"[{i}/{len(runs)}] {run.name}" for i, run in enumerate(runs, 1)}
  outcomes: dict[str, Outcome] = {}
  todo = []
  for run in runs:
    if final_result(os.path.join(workdir, run.name)) is not None:
      outcomes[run.name] = Outcome(run, "finished earlier")
      say(f"| {label[run.name]}: finished earlier, skipped")
    else:
      todo.append(run)
  free, running, forwarded = list(slots), [], False
  with _StopRequest() as stop:
    while todo or running:
      while todo and free and not stop.requested:
        run, slot = todo.pop(0), free.pop(0)
        running.append(_Running(run, _start(sweep, run, workdir, slot), slot, time.time()))
        cores = f" on cores {_ranges(slot)}" if slot else ""
        say(f"| {label[run.name]}: started{cores} (pid {running[-1].process.pid}), log in "
            f"{os.path.join(workdir, run.name, LOG_FILE)}")
      if stop.requested and not forwarded:
        outcomes.update({run.name: Outcome(run, "not started") for run in todo})
        todo, forwarded = [], True
        for each in running:
          each.process.send_signal(signal.SIGTERM)
        say(f"| stopping: {len(running)} run(s) write a checkpoint and exit; run the same command to continue")
      for each in [each for each in running if each.process.poll() is not None]:
        running.remove(each)
        free.append(each.cores)
        outcome = _ended(each.run, each.process.returncode, os.path.join(workdir, each.run.name), stop.requested)
        outcomes[each.run.name] = outcome
        say(f"| {label[each.run.name]}: {outcome.state} in {time.time() - each.start:.1f}s" + outcome.detail)
      time.sleep(POLL_SECONDS if running else 0)
  return [outcomes[run.name] for run in runs]


def _start(sweep: Sweep, run: Run, workdir: str, cores: frozenset[int] | None) -> subprocess.Popen:
  run_dir = os.path.join(workdir, run.name)
  os.makedirs(run_dir, exist_ok=True)
  if os.path.exists(os.path.join(run_dir, STATUS_FILE)):
    os.remove(os.path.join(run_dir, STATUS_FILE))  # ran again: how it ended before no longer holds
  command = [sys.executable, "-m", tasks.task(sweep.task).module, *sweep.train_args(run, workdir)]
  with open(os.path.join(run_dir, LOG_FILE), "a") as log:  # a resumed run's log follows the earlier one's
    log.write(f"| lm-jax-sweep, {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(command)}\n")
    log.flush()
    # Its own session: a Ctrl-C in the terminal reaches the sweep alone, which stops each run at a checkpoint.
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                            preexec_fn=child_process.setup(cores, os.getpid()))


def _ended(run: Run, exit_status: int, run_dir: str, stopping: bool) -> Outcome:
  """The run's Outcome, also recorded in its STATUS_FILE."""
  final = final_result(run_dir)
  if exit_status == 0 and final is not None:
    outcome = Outcome(run, "finished", exit_status, f"test ppl {final['test_ppl']:.2f}")
  elif stopping:
    outcome = Outcome(run, "stopped", exit_status)
  else:
    outcome = Outcome(run, "failed", exit_status, _last_line(os.path.join(run_dir, LOG_FILE)))
  write_atomically(os.path.join(run_dir, STATUS_FILE),
                   json.dumps({"state": outcome.state, "exit_status": exit_status, "note": outcome.note}))
  return outcome


def _last_line(path: str) -> str:
  with open(path, "rb") as f:
    f.seek(max(0, os.path.getsize(path) - 4096))
    lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
  return lines[-1] if lines else "(no output)"


def _ranges(cores: frozenset[int]) -> str:
  """{0, 1, 2, 5} -> '0-2,5'."""
  ranges = []
  for core in sorted(cores):
    if ranges and core == ranges[-1][1] + 1:
      ranges[-1][1] = core
    else:
      ranges.append([core, core])
  return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in ranges)


class _StopRequest:
  """SIGINT and SIGTERM as a request to stop, which run_sweep answers by starting no more runs and passing
  SIGTERM on to the running ones: each writes a checkpoint and exits (lm-jax-train's preemption handling)."""

  def __enter__(self) -> _StopRequest:
    self.requested = False
    self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    return self

  def __exit__(self, *exc_info) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _on_signal(self, signum, frame) -> None:
    self.requested = True
