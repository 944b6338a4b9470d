"""A sweep's report: every run's results in one table (report.md, report.csv) and plots (PNG, with
matplotlib), read from the sweep's sweep.json and each run's metrics.jsonl (lm_jax/metrics.py lists what a
run records). It only reads the runs; unfinished and failed runs appear as such."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shlex
import statistics
from typing import Callable, Sequence

from absl import logging

from lm_jax import metrics, sweep as sweep_lib
from lm_jax.sweep import Run, Sweep
from lm_jax.sweep_runner import LOG_FILE, STATUS_FILE, final_result
from lm_jax.workdir import write_atomically

REPORT_MD, REPORT_CSV = "report.md", "report.csv"
VALID_PLOT, SECONDS_PLOT = "valid_ppl_per_epoch.png", "seconds_per_epoch.png"
NOTES = ("best valid ppl: the best model's (while unfinished: the lowest after an epoch); train ppl: the mean over the "
         "last epoch's windows; s/epoch and tokens/s: the medians over epochs of the training part, epoch 1's "
         "compilation included.")


@dataclasses.dataclass(frozen=True)
class Column:
  csv_name: str
  title: str                        # in report.md
  show: Callable[[float], str]      # how report.md writes a value


COLUMNS = (Column("params", "params", lambda x: f"{int(x):,}"),
           Column("best_valid_ppl", "best valid ppl", lambda x: f"{x:.2f}"),
           Column("test_ppl", "test ppl", lambda x: f"{x:.2f}"),
           Column("train_ppl", "train ppl", lambda x: f"{x:.2f}"),
           Column("seconds_per_epoch", "s/epoch", lambda x: f"{x:.1f}"),
           Column("tokens_per_second", "tokens/s", lambda x: f"{x:,.0f}"),
           Column("epochs", "epochs", lambda x: f"{int(x)}"))


@dataclasses.dataclass(frozen=True)
class RunResult:
  run: Run
  state: str                  # 'finished', 'failed (exit status N)', 'stopped', 'unfinished' or 'not started'
  epochs: list[dict]          # its metrics' epoch records, in order
  final: dict | None          # its final record (the best model's valid and test results)

  def values(self) -> dict[str, float | None]:
    """The table's numbers by column (None where the run has none yet)."""
    last = self.epochs[-1] if self.epochs else {}
    valid = [e["valid_ppl"] for e in self.epochs]
    return {"params": _integer(last.get("num_params")),
            "best_valid_ppl": self.final["valid_ppl"] if self.final else min(valid, default=None),
            "test_ppl": self.final["test_ppl"] if self.final else None,
            "train_ppl": last.get("epoch_train_ppl"),
            "seconds_per_epoch": _median(e.get("epoch_seconds") for e in self.epochs),
            "tokens_per_second": _median(e.get("tokens_per_second") for e in self.epochs),
            "epochs": _integer(last.get("epoch"))}


def collect(workdir: str) -> tuple[Sweep, list[RunResult]]:
  """The sweep held in `workdir` and each run's results, in the sweep's order."""
  sweep = sweep_lib.read(workdir)
  return sweep, [_result(run, os.path.join(workdir, run.name)) for run in sweep.runs()]


def write(workdir: str) -> list[str]:
  """Writes report.md, report.csv and the plots into `workdir`; returns their paths (report.md first)."""
  sweep, results = collect(workdir)
  plots = _plots(sweep, results, workdir)
  write_atomically(os.path.join(workdir, REPORT_CSV), _csv(sweep, results))
  write_atomically(os.path.join(workdir, REPORT_MD), markdown(sweep, results, workdir, plots))
  return [os.path.join(workdir, name) for name in (REPORT_MD, REPORT_CSV, *plots)]


def markdown(sweep: Sweep, results: list[RunResult], workdir: str, plots: Sequence[str] = ()) -> str:
  """report.md: the command, one table row per run, what the columns mean, the plots."""
  flags = " ".join(f"--{flag}={shlex.quote(value)}" for flag, value in sweep.flags().items() if value)
  header = ["run", *sweep.varied_fields, "state", *(c.title for c in COLUMNS)]
  lines = [f"# Sweep {workdir}", "", f"`lm-jax-sweep {flags} --workdir={workdir}`", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for result in results:
    values = result.values()
    shown = [c.show(values[c.csv_name]) if values[c.csv_name] is not None else "" for c in COLUMNS]
    cells = [result.run.name, *dict(result.run.varied).values(), result.state, *shown]
    lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
  lines += ["", NOTES, ""] + [f"![{name}]({name})" for name in plots]
  return "\n".join(lines) + "\n"


def _csv(sweep: Sweep, results: list[RunResult]) -> str:
  """Every number as metrics.jsonl holds it (Python's repr of a float reads back exactly)."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["run", *sweep.varied_fields, "state", *(c.csv_name for c in COLUMNS)])
  for result in results:
    values = result.values()
    writer.writerow([result.run.name, *dict(result.run.varied).values(), result.state,
                     *("" if values[c.csv_name] is None else repr(values[c.csv_name]) for c in COLUMNS)])
  return out.getvalue()


def _result(run: Run, run_dir: str) -> RunResult:
  records = metrics.read_records(run_dir)
  final = final_result(run_dir)
  epochs = [record for record in records if "epoch" in record]
  if final is not None:
    state = "finished"
  elif os.path.exists(os.path.join(run_dir, STATUS_FILE)):
    with open(os.path.join(run_dir, STATUS_FILE)) as f:
      status = json.load(f)
    state = f"failed (exit status {status['exit_status']})" if status["state"] == "failed" else status["state"]
  else:
    state = "unfinished" if os.path.exists(os.path.join(run_dir, LOG_FILE)) else "not started"
  return RunResult(run, state, epochs, final)


def _integer(value: float | None) -> int | None:
  return None if value is None else int(value)  # metrics.jsonl holds every number as a float


def _median(values) -> float | None:
  present = [value for value in values if value is not None]
  return statistics.median(present) if present else None


def _plots(sweep: Sweep, results: list[RunResult], workdir: str) -> list[str]:
  """Validation perplexity per epoch per run, test perplexity against each varied field, and seconds per
  epoch per run, as PNG files in `workdir`; their names ([] without matplotlib)."""
  try:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt
  except ImportError:
    logging.warning("matplotlib is not installed: report.md and report.csv only (pip install matplotlib for the plots)")
    return []
  written = []

  def save(figure, name: str) -> None:
    tmp = os.path.join(workdir, f"{name}.tmp.{os.getpid()}")
    figure.tight_layout()
    figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    os.replace(tmp, os.path.join(workdir, name))
    written.append(name)

  figure, axes = plt.subplots(figsize=(7, 4.5))
  for result in results:
    if result.epochs:
      axes.plot([e["epoch"] for e in result.epochs], [e["valid_ppl"] for e in result.epochs], marker="o",
                label=result.run.name)
  axes.set(xlabel="epoch", ylabel="valid ppl", title="validation perplexity per epoch")
  axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  axes.legend(fontsize="small")
  save(figure, VALID_PLOT)

  for field in sweep.varied_fields:
    save(_test_ppl_against(plt, field, sweep, results), f"test_ppl_vs_{field}.png")

  figure, axes = plt.subplots(figsize=(7, 0.5 + 0.4 * len(results)))
  seconds = [result.values()["seconds_per_epoch"] for result in results]
  axes.barh([r.run.name for r in results], [s or 0 for s in seconds])
  axes.invert_yaxis()  # the sweep's order from the top
  axes.set(xlabel="seconds per epoch (median)", title="seconds per epoch")
  save(figure, SECONDS_PLOT)
  return written


def _test_ppl_against(plt, field: str, sweep: Sweep, results: list[RunResult]):
  """Finished runs' test perplexity against `field`'s values (in the sweep's order), one line per setting of
  the other varied fields."""
  values = dict(sweep.grid + sweep.zipped)[field]
  lines: dict[str, list[tuple[int, float]]] = {}
  for result in results:
    if result.final is not None:
      varied = dict(result.run.varied)
      others = ",".join(f"{f}={v}" for f, v in result.run.varied if f != field) or "test ppl"
      lines.setdefault(others, []).append((values.index(varied[field]), result.final["test_ppl"]))
  figure, axes = plt.subplots(figsize=(7, 4.5))
  for label, points in lines.items():
    axes.plot(*zip(*points), marker="o", label=label)
  axes.set_xticks(range(len(values)), values)
  axes.set(xlabel=field, ylabel="test ppl", title=f"test perplexity against {field}")
  if lines:
    axes.legend(fontsize="small")
  return figure
