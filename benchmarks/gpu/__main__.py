"""The GPU check's measurements (benchmarks/gpu/check.sh runs them after the tests): the cuDNN LSTM backend against
the scan, the AWD-LSTM config against PyTorch, then the step-time suite (5 models x small, medium x both
vocabularies x float32, bfloat16) against PyTorch with cuDNN, as far as the time allows, into one report.

  python -m benchmarks.gpu [--deadline=UNIX_TIME] [--parts=cudnn,awd,step_time] [--sizes=small,medium]
      [--tests_summary=TEXT] [--output_dir=benchmarks/results] [--dry_run]

Every measurement runs in a worker process, one at a time on the GPU. The suite measures each size and
vocabulary's configs in one lm_jax process, then one PyTorch process (a process per config would not fit a GPU
lent for minutes), and starts no config past --deadline: the report lists those left out. Writes
<output_dir>/gpu-<device>.md, .json and .png (gpu-h200 on an NVIDIA H200). --dry_run: on a CPU, with the
step-time suite's quick sizes, the LSTM only, and the cuDNN kernel replaced by its reference.
"""

from __future__ import annotations

import time

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

from benchmarks.common import output
from benchmarks.common.worker import require_torch
from benchmarks.gpu import measurements, report
from benchmarks.step_time import suite

flags.DEFINE_float("deadline", None, "time.time() past which no measurement starts (default: 7 minutes from now)")
PARTS = ["cudnn", "awd", "step_time"]

flags.DEFINE_list("parts", PARTS, "what to measure, of cudnn (the cuDNN backend against the scan), awd (the AWD-LSTM "
                  "config), step_time (the suite)")
flags.DEFINE_list("sizes", measurements.SIZES, "step-time sizes to measure, in order")
flags.DEFINE_string("tests_summary", "", "the tests' closing line, for the report")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --dry_run: a new "
                    "temporary directory)")
flags.DEFINE_bool("dry_run", False, "on a CPU, sizes cut, the cuDNN kernel replaced by its reference")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  del argv
  require_torch()
  unknown = sorted(set(FLAGS.parts) - set(PARTS))
  if unknown:
    raise UserError(f"unknown parts {', '.join(unknown)}; use some of {', '.join(PARTS)}")
  deadline = FLAGS.deadline or time.time() + 420
  machine = suite.describe_machine(FLAGS.dry_run)
  if machine["platform"] == "cpu" and not FLAGS.dry_run:
    raise UserError("JAX runs on a CPU here: this is the GPU check; pass --dry_run to check the script on a CPU")
  cudnn = measurements.cudnn_rows(FLAGS.dry_run) if "cudnn" in FLAGS.parts else []
  awd_results = measurements.awd_runs(FLAGS.dry_run) if "awd" in FLAGS.parts else {}
  sizes = FLAGS.sizes if "step_time" in FLAGS.parts else []
  configs, left_out = measurements.step_time_configs(machine, sizes, deadline, FLAGS.dry_run)
  support = machine["bfloat16_support"]
  dtypes_reason = f"native bfloat16 ({support})" if support else "no native bfloat16, so float32 only"
  results = {**suite.results(machine, configs, 1, FLAGS.dry_run, dtypes_reason),
             "workers": "one lm_jax worker process, then one PyTorch worker process, for each size and vocabulary's "
                        "configs", "tests": FLAGS.tests_summary, "cudnn": cudnn, "awd": awd_results,
             "unmeasured": left_out}
  name = f"gpu-{machine['name'].removeprefix('nvidia-')}"
  output.write_report(output.output_dir(FLAGS.output_dir, FLAGS.dry_run), name, results, report.markdown(results),
                      report.plot)


if __name__ == "__main__":
  run_main(main, required_flags=[])
