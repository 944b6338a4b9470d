"""lm-jax-sweep: train a config over a grid of field values, each run an ordinary lm-jax-train run in a
workdir of its own under --workdir (resumable; a finished run is not run again); --report collects the
runs' results into a table and plots.

  lm-jax-sweep --config=configs/quickstart.py --grid='model.cell=lstm,gru;model.nlayers=1,2' --workdir=runs/sweep
  lm-jax-sweep --config=configs/default.py --zip='model.emsize=200,650;model.nhid=200,650' \\
      --set='epochs=6;data.dir=../shared/data/wikitext-2' --workdir=runs/sizes --parallel=2
  lm-jax-sweep ... --print_commands > commands.txt    # one lm-jax-train command per run, for a cluster scheduler
  lm-jax-sweep --report=runs/sweep                     # report.md, report.csv and PNG plots in runs/sweep

Run the same command again to continue a sweep that stopped: finished runs are skipped, the others resume
from their checkpoints. Exit status: 0 when every run finished, 1 when a run failed (the others still run),
2 for bad input (nothing written), 143 when SIGINT or SIGTERM stopped it (each run at a checkpoint).
"""

from __future__ import annotations

import collections
import shlex
import sys

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

EXIT_RUNS_FAILED = 1
EXIT_STOPPED = 143  # as lm-jax-train's on SIGTERM

_CONFIG = flags.DEFINE_string("config", None, "Config file of every run, e.g. configs/default.py (FILE[:ARG]).")
_GRID = flags.DEFINE_string("grid", "", "Fields to vary over every combination: 'model.cell=lstm,gru;model.nlayers=1,2'.")
_ZIP = flags.DEFINE_string("zip", "", "Fields to vary together, lists of one length: "
                           "'model.emsize=200,650;model.nhid=200,650' (with --grid: each row with every combination).")
_SET = flags.DEFINE_string("set", "", "Fields set for every run: 'epochs=6;data.dir=path'.")
_TASK = flags.DEFINE_string("task", "lm", "Whose runs: 'lm' (lm-jax-train; lm_jax/tasks.py lists the tasks).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's directory: sweep.json, one workdir per run, the report.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once on this machine, the CPU cores split between them.")
_PRINT_COMMANDS = flags.DEFINE_bool("print_commands", False, "Record the sweep in --workdir and print one lm-jax-train "
                                    "command per run (for a SLURM array, a TPU pod's hosts) instead of running them.")
_REPORT = flags.DEFINE_string("report", None, "Write the report of the sweep in this directory (report.md, report.csv, "
                              "PNG plots) and print its table; nothing is run.")


def main(argv: list[str]) -> None:
  if _REPORT.value is not None:
    report()
  else:
    plan_and_run(argv[0].rsplit("/", 1)[-1])


def report() -> None:
  from lm_jax import sweep_report

  given = [f"--{name}" for name in ("config", "grid", "zip", "set", "task", "workdir", "parallel", "print_commands")
           if flags.FLAGS[name].present]
  if given:
    raise UserError(f"--report reads the sweep recorded in its directory; pass it without {', '.join(given)}")
  written = sweep_report.write(_REPORT.value)
  with open(written[0]) as f:
    print(f.read(), end="")
  print("| wrote " + ", ".join(written))


def plan_and_run(prog: str) -> None:
  from lm_jax import sweep as sweep_lib, sweep_runner, tasks

  if _CONFIG.value is None or _WORKDIR.value is None:
    raise UserError("pass --config and --workdir to run a sweep, or --report=DIR to report on one")
  sweep = sweep_lib.plan(_CONFIG.value, _GRID.value, _ZIP.value, _SET.value, _TASK.value)
  slots = sweep_runner.cpu_slots(_PARALLEL.value)
  sweep_lib.claim(sweep, _WORKDIR.value)
  if _PRINT_COMMANDS.value:
    for run in sweep.runs():
      print(shlex.join([tasks.task(sweep.task).script, *sweep.train_args(run, _WORKDIR.value)]))
    return
  outcomes = sweep_runner.run_sweep(sweep, _WORKDIR.value, slots)
  counts = collections.Counter(o.state for o in outcomes)
  print(f"| sweep {_WORKDIR.value}: " + ", ".join(f"{n} {state}" for state, n in counts.items()) +
        f"; report: lm-jax-sweep --report={_WORKDIR.value}")
  failed = [o.run.name for o in outcomes if o.state == "failed"]
  if failed:
    print(f"{prog}: {len(failed)} of {len(outcomes)} runs failed ({', '.join(failed)}); see their "
          f"{sweep_runner.LOG_FILE} in {_WORKDIR.value}, then run the same command to retry them", file=sys.stderr)
  if counts["stopped"] or counts["not started"]:
    sys.exit(EXIT_STOPPED)
  if failed:
    sys.exit(EXIT_RUNS_FAILED)


def run() -> None:
  run_main(main, [])


if __name__ == "__main__":
  run()
