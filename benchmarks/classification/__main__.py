"""Text classification on the real corpora: lm_jax's classifiers beside the published figures and two baselines on
the same splits, and Kim's CNN's speed against the PyTorch reference (issue #21); ULMFiT's ablation rows (issue #22)
on the language models its recipe trained.

  python -m benchmarks.classification [--datasets=mr,sst1,sst2,trec] [--models=cnn] [--baselines=nbsvm,fasttext]
      [--data_root=../shared/data] [--ulmfit_dir=runs/ulmfit] [--epochs=N] [--lr=LR] [--seeds=1] [--rounds=3]
      [--speed_length=64] [--parts=accuracy,baselines,speed] [--runs_dir=DIR] [--merge]
      [--output_dir=benchmarks/results] [--quick]

Every measurement is a worker process: each (dataset, model) trained by lm_jax's train_and_evaluate (accuracy.py),
each (dataset, baseline) on the same runs (baselines.py), and Kim's CNN timed in rounds of one lm_jax worker then one
PyTorch worker (speed.py). Writes <output_dir>/classify-<device>.md, .json and .png and prints the markdown;
progress and the runs' log lines go to stderr. SIGTERM stops the lm_jax run in progress at a checkpoint, and the
benchmark with one line and status 143, as lm-jax-classify; with --runs_dir the same command continues it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from pathlib import Path

from absl import flags

from lm_jax.cli.common import run_main, train_until_preempted
from lm_jax.errors import UserError

from benchmarks.classification import datasets, report
from benchmarks.classification.baselines import BASELINES, missing_reason
from benchmarks.classification.plot import plot
from benchmarks.classification.speed import QUICK_SHAPE, Shape
from benchmarks.common import output
from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.common.worker import call_worker, progress, require_torch

PARTS = ("accuracy", "baselines", "speed")
QUICK = {"rounds": 1, "datasets": ["synthetic"], "matmul_n": 256, "bandwidth_mib": 16}

flags.DEFINE_list("datasets", ["mr", "sst1", "sst2", "trec"], f"corpora, of {', '.join(datasets.DATASETS)} "
                  "(--quick: synthetic)")
flags.DEFINE_list("models", ["cnn"], f"lm_jax models, of {', '.join(datasets.MODELS)}")
flags.DEFINE_list("baselines", list(BASELINES), f"baselines, of {', '.join(BASELINES)} (skipped with the reason "
                  "where scikit-learn or fastText is not installed: the classify-bench extra)")
flags.DEFINE_string("data_root", "../shared/data", "where the corpora's folders are (../shared/data/README.md)")
flags.DEFINE_string("ulmfit_dir", "runs/ulmfit", "where the ULMFiT rows' language models are: wt2/ and "
                    "<dataset>_lm/, as docs/classification.md's recipe trains them")
flags.DEFINE_integer("epochs", None, "train every lm_jax model this many epochs (default: its recipe's, 25)")
flags.DEFINE_float("lr", None, "train every lm_jax model at this learning rate, config.optim.lr (default: its "
                   "recipe's); the report's rows name it")
flags.DEFINE_integer("seeds", 1, "train each lm_jax model with this many seeds (config.seed, +1, ...; kept in "
                     "<runs_dir>/<dataset>-<model>, then -seed1, ...): the row is their mean ± standard deviation, over "
                     "every fold of each on MR")
flags.DEFINE_integer("rounds", 3, "alternating lm_jax/PyTorch worker pairs timing Kim's CNN (--quick: 1)")
flags.DEFINE_integer("speed_length", Shape.length, "tokens per row of the timed batches (a bucket length)")
flags.DEFINE_list("parts", list(PARTS), f"what to measure, of {', '.join(PARTS)}")
flags.DEFINE_string("runs_dir", None, "keep each lm_jax run in DIR/<dataset>-<model> and resume it there: the same "
                    "command continues an interrupted benchmark, finished runs are only scored again (default: "
                    "temporary workdirs)")
flags.DEFINE_bool("merge", False, "keep the rows of the report already in --output_dir that this run does not "
                  "measure (a long benchmark in pieces)")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --quick: a new "
                    "temporary directory)")
flags.DEFINE_bool("quick", False, "smoke test: tiny models for 1 epoch, 2 folds, one speed round of tiny shapes; "
                  "the figures mean nothing")
FLAGS = flags.FLAGS


def chosen_settings() -> dict:
  """The flags' settings, or --quick's where the flag was not given."""
  quick = FLAGS.quick
  shape = QUICK_SHAPE if quick else Shape()
  if FLAGS["speed_length"].present:
    shape = dataclasses.replace(shape, length=FLAGS.speed_length)
  return {"rounds": QUICK["rounds"] if quick else FLAGS.rounds,
          "datasets": QUICK["datasets"] if quick and not FLAGS["datasets"].present else FLAGS.datasets,
          "shape": shape, "epochs": datasets.QUICK_EPOCHS if quick and FLAGS.epochs is None else FLAGS.epochs,
          "matmul_n": QUICK["matmul_n"] if quick else 2048, "bandwidth_mib": QUICK["bandwidth_mib"] if quick else 512}


def _unknown(kind: str, given: list[str], known) -> None:
  unknown = [name for name in given if name not in known]
  if unknown:
    raise UserError(f"unknown {kind} {', '.join(unknown)}; use some of {', '.join(known)}")


def plan(chosen: dict) -> dict:
  """What to measure, every name checked and every corpus found before any worker starts."""
  _unknown("parts", FLAGS.parts, PARTS)
  _unknown("datasets", chosen["datasets"], datasets.DATASETS)
  _unknown("models", FLAGS.models, datasets.MODELS)
  _unknown("baselines", FLAGS.baselines, BASELINES)
  if (chosen["rounds"] < 1 or FLAGS.seeds < 1 or FLAGS.speed_length < 2
      or (chosen["epochs"] is not None and chosen["epochs"] < 1)):
    raise UserError("--rounds, --seeds and --epochs must be >= 1, --speed_length >= 2")
  if FLAGS.lr is not None and not FLAGS.lr > 0:
    raise UserError(f"--lr must be > 0 (got {FLAGS.lr:g}); pass e.g. --lr=1e-3, or leave it out for each recipe's")
  models = FLAGS.models if "accuracy" in FLAGS.parts else []
  for dataset in chosen["datasets"]:
    datasets.check_present(dataset, FLAGS.data_root)
    for model in [m for m in models if m in datasets.ULMFIT_ROWS]:
      datasets.check_ulmfit(dataset, model, FLAGS.ulmfit_dir, FLAGS.quick)
  config = lambda dataset, model: datasets.config_for(dataset, model, FLAGS.data_root, epochs=chosen["epochs"],
                                                      lr=FLAGS.lr, quick=FLAGS.quick,
                                                      ulmfit_dir=FLAGS.ulmfit_dir).to_dict()
  baselines = FLAGS.baselines if "baselines" in FLAGS.parts else []
  if "speed" in FLAGS.parts:
    require_torch()
  return {"models": [(d, m, config(d, m)) for d in chosen["datasets"] for m in models],
          "baselines": [(d, b, config(d, "cnn")["data"]) for d in chosen["datasets"] for b in baselines]}


def measure_accuracy(planned: dict) -> tuple[list[dict], list[dict]]:
  rows, skipped = [], []
  seeds = f", {FLAGS.seeds} seeds" if FLAGS.seeds > 1 else ""
  for dataset, model, config in planned["models"]:
    progress(f"{dataset} {model}: lm_jax, {config['epochs']} epochs{seeds}")
    workdir = os.path.abspath(os.path.join(FLAGS.runs_dir, f"{dataset}-{model}")) if FLAGS.runs_dir else None
    lr = {"lr": FLAGS.lr} if FLAGS.lr is not None else {}  # named in the row's setting
    rows.append({"dataset": dataset, "model": model, **lr, **call_worker("benchmarks.classification.accuracy:run",
                                                                   {"config": config, "workdir": workdir,
                                                                    "seeds": FLAGS.seeds}, "lm_jax")})
    progress(f"  test accuracy {report.percent(rows[-1])} in {rows[-1]['train_s']:.0f} s")
  for dataset, baseline, data in planned["baselines"]:
    reason = missing_reason(baseline)
    if reason:
      progress(f"{dataset} {baseline}: skipped, {reason}")
      skipped.append({"dataset": dataset, "model": baseline, "reason": reason})
      continue
    progress(f"{dataset} {baseline}")
    rows.append({"dataset": dataset, "model": baseline,
                 **call_worker("benchmarks.classification.baselines:run", {"baseline": baseline, "data": data})})
    progress(f"  test accuracy {report.percent(rows[-1])} in {rows[-1]['train_s']:.0f} s")
  return rows, skipped


def measure_speed(shape: Shape, rounds: int) -> dict:
  runs = {framework: [] for framework in FRAMEWORKS}
  with tempfile.TemporaryDirectory(prefix="lm_jax_classify_speed_") as directory:
    weights = str(Path(directory) / "weights.npz")  # written by the first lm_jax worker, read by every other
    for round_index in range(rounds):
      for framework, label in FRAMEWORKS.items():
        progress(f"Kim's CNN speed, round {round_index + 1}/{rounds}: {label}")
        run = call_worker("benchmarks.classification.speed:run", {"framework": framework,
                          "shape": dataclasses.asdict(shape), "weights_path": weights}, framework)
        progress(f"  training {run['train_examples_per_s']:,.0f} examples/s, prediction "
                 f"{run['predict_examples_per_s']:,.0f} examples/s")
        runs[framework].append(run)
  return report.summarise_speed(dataclasses.asdict(shape), runs)


def main(argv: list[str]) -> None:
  del argv
  chosen = chosen_settings()
  planned = plan(chosen)
  directory = output.output_dir(FLAGS.output_dir, FLAGS.quick)
  progress("machine: devices, matmul ceilings, memory bandwidth")
  machine = call_worker("benchmarks.common.machine:describe",
                        {"matmul_n": chosen["matmul_n"], "bandwidth_mib": chosen["bandwidth_mib"]})
  rows, skipped = measure_accuracy(planned)
  language_models = {d: datasets.language_model_stages(d, FLAGS.ulmfit_dir) for d, m, _ in planned["models"]
                     if m in datasets.ULMFIT_ROWS}
  speed = measure_speed(chosen["shape"], chosen["rounds"]) if "speed" in FLAGS.parts else None
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": FLAGS.quick, "machine": machine,
             "settings": {"data_root": FLAGS.data_root, "epochs": chosen["epochs"], "lr": FLAGS.lr,
                          "parts": FLAGS.parts},
             "rows": rows, "skipped": skipped, "speed": speed, "language_models": language_models,
             "targets": report.targets(rows, skipped, speed)}
  name = f"classify-{machine['name']}"
  previous = directory / f"{name}{'-quick' if FLAGS.quick else ''}.json"
  if FLAGS.merge and previous.exists():
    results = report.merged(json.loads(previous.read_text()), results)
  output.write_report(directory, name, results, report.markdown(results), plot)


def main_until_preempted(argv: list[str]) -> None:
  train_until_preempted("classification", lambda: main(argv))


if __name__ == "__main__":
  run_main(main_until_preempted, required_flags=[])
