"""lm_jax vs PyTorch: train step, evaluation and generation speed per cell and model size.

  python -m benchmarks.step_time [--cells=lstm,gru,rnn_tanh,rnn_relu] [--sizes=small,medium]
      [--rounds=3] [--steps=N] [--output_dir=benchmarks/results] [--include_large] [--quick]

Every measurement runs in its own worker process, lm_jax and PyTorch alternately (A B A B ...), so each
lm_jax/PyTorch ratio comes from two neighbouring processes on the same machine. Writes
<output_dir>/<device>.md, .json and .png and prints the markdown; progress goes to stderr.
"""

from __future__ import annotations

import dataclasses
import datetime

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.config import reference_config
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS

from benchmarks import output, report
from benchmarks.flops import FORMULA
from benchmarks.shapes import SIZES, make_shape
from benchmarks.worker import call_worker, progress, require_torch

BENCHMARK_SIZES = [size for size in SIZES if size != "quick"]

flags.DEFINE_list("cells", list(CELLS), f"cells to measure, of {', '.join(CELLS)}")
flags.DEFINE_list("sizes", BENCHMARK_SIZES, "sizes to measure: small (2x200 untied), medium (2x650 tied), "
                  "large (2x1500 tied; on a CPU only with --include_large)")
flags.DEFINE_integer("rounds", 3, "alternating lm_jax/PyTorch worker pairs per config (--quick: 1)")
flags.DEFINE_integer("steps", None, "timed train steps per worker (default 20; --quick: 3)")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --quick: a new "
                    "temporary directory)")
flags.DEFINE_bool("include_large", False, "measure the large size on a CPU too (slow)")
flags.DEFINE_bool("quick", False, "smoke test: tiny shapes, one round, a few steps; the timings mean nothing")
FLAGS = flags.FLAGS


def chosen_sizes(platform: str) -> list[str]:
  if FLAGS.quick:
    return ["quick"]
  if platform == "cpu" and "large" in FLAGS.sizes and not FLAGS.include_large:
    progress("skipping the large size on a CPU; pass --include_large to measure it")
    return [size for size in FLAGS.sizes if size != "large"]
  return FLAGS.sizes


def check_flags() -> None:
  for name, values, allowed in (("cells", FLAGS.cells, list(CELLS)), ("sizes", FLAGS.sizes, BENCHMARK_SIZES)):
    unknown = sorted(set(values) - set(allowed))
    if unknown:
      raise UserError(f"unknown {name} {', '.join(unknown)}; use some of {', '.join(allowed)}")
  if FLAGS.rounds < 1 or (FLAGS.steps is not None and FLAGS.steps < 1):
    raise UserError("--rounds and --steps must be >= 1")
  require_torch()


def measure_config(cell: str, size: str, rounds: int) -> dict:
  reference = reference_config().optim  # clip 0.25, SGD lr 20 for both frameworks
  shape = make_shape(cell, size, reference.lr, reference.clip, FLAGS.steps)
  runs = {framework: [] for framework in report.FRAMEWORKS}
  for round_index in range(rounds):
    for framework, label in report.FRAMEWORKS.items():
      progress(f"{cell} {size}, round {round_index + 1}/{rounds}: {label}")
      # The step breakdown needs lm_jax alone; one round of it is enough.
      run = call_worker({"task": framework, "shape": dataclasses.asdict(shape),
                         "breakdown": framework == "lm_jax" and round_index == 0})
      progress(f"  {run['train_ms']:.2f} ms/step, {run['eval_tokens_per_s']:,.0f} eval tokens/s, "
               f"{run['generate_words_per_s']:,.0f} words/s")
      runs[framework].append(run)
  return report.summarise(shape, runs)


def main(argv: list[str]) -> None:
  del argv
  check_flags()
  progress("machine: devices and the fp32 matmul ceiling")
  machine = call_worker({"task": "machine", "matmul_n": 256 if FLAGS.quick else 2048})
  rounds = 1 if FLAGS.quick else FLAGS.rounds
  configs = [measure_config(cell, size, rounds) for size in chosen_sizes(machine["platform"]) for cell in FLAGS.cells]
  results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "quick": FLAGS.quick, "rounds": rounds, "machine": machine, "flops_formula": FORMULA,
             "configs": configs, "targets": report.targets(configs)}
  output.write_report(output.output_dir(FLAGS.output_dir, FLAGS.quick), machine["name"], results,
                      report.markdown(results), report.plot)


if __name__ == "__main__":
  run_main(main, required_flags=[])
