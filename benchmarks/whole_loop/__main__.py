"""The whole training loop, lm_jax's trainer against the PyTorch reference's main.py, on real corpora.

  python -m benchmarks.whole_loop [--datasets=ptb,wikitext-2] [--data_root=../shared/data] [--windows=300]
      [--warmup=25] [--rounds=3] [--cells=lstm] [--output_dir=benchmarks/results] [--quick]

Both run configs/default.py's settings (LSTM 2x200, batch 20, bptt 35, SGD lr 20, clip 0.25, dropout 0.2,
a log line every 200 windows) on <data_root>/<dataset>/{train,valid,test}.txt, and each times windows
[warmup, warmup + windows) of its first epoch: lm_jax with lm_jax.train's own loop (jax_loop.py),
PyTorch with main.py's train() (torch_loop.py). Each measurement is a fresh worker process,
lm_jax and PyTorch alternately. Writes <output_dir>/whole-loop-<device>.md, .json and .png and prints the
markdown; progress goes to stderr.
"""

from __future__ import annotations

import datetime
import os

import ml_collections
from absl import flags

from configs import default
from lm_jax import config as config_lib
from lm_jax.cli.common import run_main
from lm_jax.data.sources import read_directory
from lm_jax.data.vocab import tokenize
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS

from benchmarks.common import output
from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.common.worker import call_worker, progress, require_torch
from benchmarks.whole_loop import report as loop_report

LOOPS = {"lm_jax": "benchmarks.whole_loop.jax_loop:run", "pytorch": "benchmarks.whole_loop.torch_loop:run"}
# --quick: a smoke test on a tiny corpus, logging often enough that the timed windows hold log lines.
QUICK = {"rounds": 1, "warmup": 2, "windows": 4, "log_interval": 2, "matmul_n": 256, "bandwidth_mib": 16}

flags.DEFINE_list("datasets", ["ptb", "wikitext-2"], "corpora: directories under --data_root holding train.txt, "
                  "valid.txt and test.txt")
flags.DEFINE_string("data_root", "../shared/data", "where the --datasets directories are")
flags.DEFINE_integer("windows", 300, "timed windows per worker (--quick: 4)")
flags.DEFINE_integer("warmup", 25, "windows trained before the timed ones, lm_jax compiling in the first (--quick: 2)")
flags.DEFINE_integer("rounds", 3, "alternating lm_jax/PyTorch worker pairs per dataset and cell (--quick: 1)")
flags.DEFINE_list("cells", ["lstm"], f"cells to measure, of {', '.join(CELLS)}")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --quick: a new "
                    "temporary directory)")
flags.DEFINE_bool("quick", False, "smoke test: one round of a few windows, a log line every 2; the timings "
                  "mean nothing")
FLAGS = flags.FLAGS


def loop_config(data_dir: str, cell: str, log_interval: int | None) -> ml_collections.ConfigDict:
  """configs/default.py on `data_dir` with `cell`: what both frameworks run. Checkpoints only at epoch ends
  (none is reached), as main.py saves its model only there."""
  config = default.get_config()
  config.data.dir, config.model.cell, config.checkpoint_every = data_dir, cell, 0
  if log_interval is not None:
    config.log_interval = log_interval
  config_lib.validate(config)
  return config


def training_tokens(dataset: str, data_dir: str) -> int:
  if not os.path.isdir(data_dir):
    raise UserError(f"no {dataset} corpus: {data_dir} is not a directory; pass --data_root=DIR holding "
                    f"{dataset}/train.txt, valid.txt and test.txt, or leave {dataset} out of --datasets")
  return len(tokenize(read_directory(data_dir)["train"]))


def chosen_settings() -> dict:
  """The flags' rounds, warm-up and timed windows, the config's log interval (None) and the full matmul
  ceiling and bandwidth measurement; or --quick's."""
  if FLAGS.quick:
    return QUICK
  return {"rounds": FLAGS.rounds, "warmup": FLAGS.warmup, "windows": FLAGS.windows, "log_interval": None,
          "matmul_n": 2048, "bandwidth_mib": 512}


def plan(chosen: dict) -> list[dict]:
  """Every (dataset, cell) to measure, each checked to fit before any worker starts."""
  unknown = sorted(set(FLAGS.cells) - set(CELLS))
  if unknown:
    raise UserError(f"unknown cells {', '.join(unknown)}; use some of {', '.join(CELLS)}")
  if min(chosen["rounds"], chosen["warmup"], chosen["windows"]) < 1:
    raise UserError("--rounds, --warmup and --windows must be >= 1")
  measurements = []
  for dataset in FLAGS.datasets:
    data_dir = os.path.abspath(os.path.join(FLAGS.data_root, dataset))  # the workers run in the repository root
    train_tokens = training_tokens(dataset, data_dir)
    for cell in FLAGS.cells:
      config = loop_config(data_dir, cell, chosen["log_interval"])
      tokens = loop_report.timed_tokens(dataset, train_tokens, config.batch_size, config.bptt, chosen["warmup"],
                                        chosen["windows"])
      measurements.append({"dataset": dataset, "config": config.to_dict(), "train_tokens": train_tokens,
                           "tokens": tokens})
  require_torch()
  return measurements


def measure(measurement: dict, chosen: dict) -> dict:
  loop = {"config": measurement["config"], "warmup": chosen["warmup"], "windows": chosen["windows"]}
  runs = {framework: [] for framework in FRAMEWORKS}
  for round_index in range(chosen["rounds"]):
    for framework, label in FRAMEWORKS.items():
      progress(f"{measurement['dataset']} {measurement['config']['model']['cell']}, round {round_index + 1}/"
               f"{chosen['rounds']}: {label}")
      run = call_worker(LOOPS[framework], loop, framework)
      progress(f"  {1000 * run['timed_s'] / chosen['windows']:.2f} ms/window; corpus load {run['load_s']:.1f} s, "
               f"first {chosen['warmup']} windows {run['warmup_s']:.1f} s")
      runs[framework].append(run)
  return loop_report.summarise(measurement["dataset"], measurement["config"], measurement["train_tokens"],
                               chosen["windows"], measurement["tokens"], runs)


def main(argv: list[str]) -> None:
  del argv
  chosen = chosen_settings()
  measurements = plan(chosen)
  progress("machine: devices, matmul ceilings, memory bandwidth")
  machine = call_worker("benchmarks.common.machine:describe",
                        {"matmul_n": chosen["matmul_n"], "bandwidth_mib": chosen["bandwidth_mib"]})
  configs = [measure(measurement, chosen) for measurement in measurements]
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": FLAGS.quick, "rounds": chosen["rounds"], "machine": machine,
             "settings": {key: chosen[key] for key in ("warmup", "windows")}, "configs": configs,
             "targets": loop_report.targets(configs)}
  output.write_report(output.output_dir(FLAGS.output_dir, FLAGS.quick), f"whole-loop-{machine['name']}", results,
                      loop_report.markdown(results), loop_report.plot)


if __name__ == "__main__":
  run_main(main, required_flags=[])
