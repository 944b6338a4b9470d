"""The whole training loop, lm_jax's trainer against a PyTorch reference's main.py, on real corpora.

  python -m benchmarks.whole_loop [--models=word_language_model,awd] [--datasets=ptb,wikitext-2]
      [--data_root=../shared/data] [--windows=N] [--warmup=N] [--rounds=N] [--cells=lstm]
      [--dtypes=float32,bfloat16] [--output_dir=benchmarks/results] [--quick]

Two models, each against its reference, on <data_root>/<dataset>/{train,valid,test}.txt:
- word_language_model (the default): configs/default.py's settings (LSTM 2x200, batch 20, bptt 35, SGD lr 20,
  clip 0.25, dropout 0.2, a log line every 200 windows), one row per dataset and --cells cell, against PyTorch's
  word_language_model main.py's train(). Defaults: --warmup=25 --windows=300 --rounds=3.
- awd: configs/awd_ptb.py (AWD-LSTM 3 layers 1150/1150/400, batch 20, variable BPTT around 70, all its
  dropouts, AR/TAR, SGD lr 30 with weight decay, clip 0.25), PTB only (other --datasets are left out of it),
  against salesforce/awd-lstm-lm main.py's train() with the README's PTB flags. A window takes ~2 s on a
  2-core CPU, so defaults: --warmup=5 --windows=40 --rounds=3. Its windows vary in length, differently on each
  side, so its speedup is tokens/s over tokens/s.
--warmup, --windows and --rounds, when given, apply to every model. --dtypes (default float32) gives each row
per matmul dtype: lm_jax's config.model.matmul_dtype, PyTorch's torch.autocast around the forward and the loss.

Each side times windows [warmup, warmup + windows) of its first epoch: lm_jax with lm_jax.train's own loop
(jax_loop.py), PyTorch with the reference main.py's train() (torch_loop.py). Each measurement is a fresh worker
process, lm_jax and PyTorch alternately. Writes <output_dir>/whole-loop-<device>.md, .json and .png and prints
the markdown; progress goes to stderr.
"""

from __future__ import annotations

import datetime
import os

import ml_collections
from absl import flags

from configs import awd_ptb, default
from lm_jax import config as config_lib
from lm_jax.cli.common import run_main
from lm_jax.data.sources import read_directory
from lm_jax.data.vocab import tokenize
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS
from lm_jax.models.precision import MATMUL_DTYPES

from benchmarks.common import output
from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.common.worker import call_worker, progress, require_torch
from benchmarks.whole_loop import report as loop_report

LOOPS = {"word_language_model": {"lm_jax": "benchmarks.whole_loop.jax_loop:run",
                                 "pytorch": "benchmarks.whole_loop.torch_loop:run"},
         "awd": {"lm_jax": "benchmarks.whole_loop.jax_loop:run", "pytorch": "benchmarks.whole_loop.torch_loop:run_awd"}}
DEFAULTS = {"word_language_model": {"rounds": 3, "warmup": 25, "windows": 300},
            "awd": {"rounds": 3, "warmup": 5, "windows": 40}}
AWD_CONFIGS = {"ptb": awd_ptb}  # the datasets the awd row runs on, each with its reference's README flags
# --quick: a smoke test on a tiny corpus, logging often enough that the timed windows hold log lines.
QUICK = {"rounds": 1, "warmup": 2, "windows": 4}
QUICK_LOG_INTERVAL = 2
# ... and AWD-LSTM cut to a tiny model at batch 4, so that a tiny corpus holds its windows of ~70 steps.
QUICK_AWD = {"model": {"emsize": 16, "nhid": 24}, "batch_size": 4}
MACHINE = {"matmul_n": 2048, "bandwidth_mib": 512}
QUICK_MACHINE = {"matmul_n": 256, "bandwidth_mib": 16}

flags.DEFINE_list("models", ["word_language_model"], f"models to measure, of {', '.join(LOOPS)}")
flags.DEFINE_list("datasets", ["ptb", "wikitext-2"], "corpora: directories under --data_root holding train.txt, "
                  "valid.txt and test.txt")
flags.DEFINE_string("data_root", "../shared/data", "where the --datasets directories are")
flags.DEFINE_integer("windows", None, "timed windows per worker (default: word_language_model 300, awd 40; "
                     "--quick: 4)")
flags.DEFINE_integer("warmup", None, "windows trained before the timed ones, lm_jax compiling in the first (default: "
                     "word_language_model 25, awd 5; --quick: 2)")
flags.DEFINE_integer("rounds", None, "alternating lm_jax/PyTorch worker pairs per row (default 3; --quick: 1)")
flags.DEFINE_list("cells", ["lstm"], f"word_language_model's cells to measure, of {', '.join(CELLS)}")
flags.DEFINE_list("dtypes", ["float32"], f"matmul dtypes to measure each row in, of {', '.join(MATMUL_DTYPES)} "
                  "(lm_jax's config.model.matmul_dtype; PyTorch under torch.autocast)")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --quick: a new "
                    "temporary directory)")
flags.DEFINE_bool("quick", False, "smoke test: one round of a few windows, a log line every 2, AWD-LSTM tiny; the "
                  "timings mean nothing")
FLAGS = flags.FLAGS


def loop_config(data_dir: str, cell: str, log_interval: int | None) -> ml_collections.ConfigDict:
  """configs/default.py on `data_dir` with `cell`: what both frameworks run."""
  config = default.get_config()
  config.model.cell = cell
  return on_corpus(config, data_dir, log_interval)


def awd_config(dataset: str, data_dir: str, log_interval: int | None, quick: bool) -> ml_collections.ConfigDict:
  """The dataset's AWD-LSTM config on `data_dir` (--quick: QUICK_AWD's tiny model and batch)."""
  config = AWD_CONFIGS[dataset].get_config()
  if quick:
    config.update(QUICK_AWD)
  return on_corpus(config, data_dir, log_interval)


def on_corpus(config: ml_collections.ConfigDict, data_dir: str, log_interval: int | None) -> ml_collections.ConfigDict:
  """`config` on `data_dir`, validated. Checkpoints only at epoch ends (none is reached), as main.py saves its
  model only there."""
  config.data.dir, config.checkpoint_every = data_dir, 0
  if log_interval is not None:
    config.log_interval = log_interval
  config_lib.validate(config)
  return config


def training_tokens(dataset: str, data_dir: str) -> int:
  if not os.path.isdir(data_dir):
    raise UserError(f"no {dataset} corpus: {data_dir} is not a directory; pass --data_root=DIR holding "
                    f"{dataset}/train.txt, valid.txt and test.txt, or leave {dataset} out of --datasets")
  return len(tokenize(read_directory(data_dir)["train"]))


def chosen_settings(model: str) -> dict:
  """A model's rounds, warm-up and timed windows: the flags', else its defaults; or --quick's."""
  if FLAGS.quick:
    return QUICK
  flagged = {"rounds": FLAGS.rounds, "warmup": FLAGS.warmup, "windows": FLAGS.windows}
  return {key: DEFAULTS[model][key] if value is None else value for key, value in flagged.items()}


def plan() -> list[dict]:
  """Every (model, dataset, cell) to measure, each checked to fit before any worker starts."""
  for chosen, known, what in ((FLAGS.models, LOOPS, "models"), (FLAGS.cells, CELLS, "cells"),
                              (FLAGS.dtypes, MATMUL_DTYPES, "dtypes")):
    unknown = [name for name in chosen if name not in known]
    if unknown:
      raise UserError(f"unknown {what} {', '.join(unknown)}; use some of {', '.join(known)}")
  if "awd" in FLAGS.models and not set(AWD_CONFIGS) & set(FLAGS.datasets):
    raise UserError(f"the awd model runs on {', '.join(AWD_CONFIGS)} only; add it to --datasets")
  settings = {model: chosen_settings(model) for model in FLAGS.models}
  if any(value < 1 for chosen in settings.values() for value in chosen.values()):
    raise UserError("--rounds, --warmup and --windows must be >= 1")
  log_interval = QUICK_LOG_INTERVAL if FLAGS.quick else None  # None: the config's own
  # The workers run in the repository root.
  data_dirs = {dataset: os.path.abspath(os.path.join(FLAGS.data_root, dataset)) for dataset in FLAGS.datasets}
  train_tokens = {dataset: training_tokens(dataset, data_dir) for dataset, data_dir in data_dirs.items()}
  measurements = []
  for model in FLAGS.models:
    for dataset, data_dir in data_dirs.items():
      for config in model_configs(model, dataset, data_dir, log_interval):
        check_windows(model, dataset, train_tokens[dataset], config, settings[model])
        measurements.append({"model": model, "dataset": dataset, "config": config.to_dict(),
                             "train_tokens": train_tokens[dataset], "settings": settings[model]})
  if not measurements:
    raise UserError("nothing to measure: --models, --datasets, --cells and --dtypes must each name at least one")
  require_torch()
  return measurements


def model_configs(model: str, dataset: str, data_dir: str, log_interval: int | None) -> list[ml_collections.ConfigDict]:
  """The configs both frameworks run for `model` on `dataset`, each in every --dtypes dtype: a word_language_model
  per cell, AWD-LSTM on the datasets it has a config for."""
  if model == "awd":
    configs = [awd_config(dataset, data_dir, log_interval, FLAGS.quick)] if dataset in AWD_CONFIGS else []
  else:
    configs = [loop_config(data_dir, cell, log_interval) for cell in FLAGS.cells]
  return [in_dtype(config, dtype) for config in configs for dtype in FLAGS.dtypes]


def in_dtype(config: ml_collections.ConfigDict, dtype: str) -> ml_collections.ConfigDict:
  """A copy of `config` with its matmuls in `dtype`."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.matmul_dtype = dtype
  return config


def check_windows(model: str, dataset: str, train_tokens: int, config: ml_collections.ConfigDict,
                  settings: dict) -> None:
  """Windows [warmup, warmup + windows) of epoch 1 must exist (word_language_model: full-length ones)."""
  check = loop_report.require_variable_windows if model == "awd" else loop_report.timed_tokens
  check(dataset, train_tokens, config.batch_size, config.bptt, settings["warmup"], settings["windows"])


def measure(measurement: dict) -> dict:
  settings = measurement["settings"]
  loop = {"config": measurement["config"], "warmup": settings["warmup"], "windows": settings["windows"]}
  name = loop_report.label(measurement["model"], measurement["config"]["model"])
  runs = {framework: [] for framework in FRAMEWORKS}
  for round_index in range(settings["rounds"]):
    for framework, label in FRAMEWORKS.items():
      progress(f"{measurement['dataset']} {name}, round {round_index + 1}/{settings['rounds']}: {label}")
      run = call_worker(LOOPS[measurement["model"]][framework], loop, framework)
      progress(f"  {1000 * run['timed_s'] / settings['windows']:.2f} ms/window, "
               f"{run['timed_tokens'] / run['timed_s']:,.0f} tokens/s; corpus load {run['load_s']:.1f} s, "
               f"first {settings['warmup']} windows {run['warmup_s']:.1f} s")
      runs[framework].append(run)
  return loop_report.summarise(measurement["model"], measurement["dataset"], measurement["config"],
                               measurement["train_tokens"], settings, runs)


def main(argv: list[str]) -> None:
  del argv
  measurements = plan()
  progress("machine: devices, matmul ceilings, memory bandwidth")
  machine = call_worker("benchmarks.common.machine:describe", QUICK_MACHINE if FLAGS.quick else MACHINE)
  configs = [measure(measurement) for measurement in measurements]
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": FLAGS.quick, "machine": machine, "configs": configs, "targets": loop_report.targets(configs)}
  output.write_report(output.output_dir(FLAGS.output_dir, FLAGS.quick), f"whole-loop-{machine['name']}", results,
                      loop_report.markdown(results), loop_report.plot)


if __name__ == "__main__":
  run_main(main, required_flags=[])
