"""lm_jax vs PyTorch: train step, evaluation, generation and recurrence speed per model, size,
vocabulary and matmul dtype.

  python -m benchmarks.step_time [--models=lstm,gru,rnn_tanh,rnn_relu,transformer] [--sizes=small,medium]
      [--vocabs=10000,33278] [--dtypes=float32,bfloat16] [--rounds=3] [--steps=N]
      [--output_dir=benchmarks/results] [--include_large] [--quick]

Every measurement runs in its own worker process, lm_jax and PyTorch alternately (A B A B ...), so each
lm_jax/PyTorch ratio comes from two neighbouring processes on the same machine, in the same dtype. Writes
<output_dir>/<device>.md, .json and .png and prints the markdown; progress goes to stderr.
"""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.config import reference_config
from lm_jax.errors import UserError
from lm_jax.models.cells import CELLS

from benchmarks.common import output
from benchmarks.common.worker import progress, require_torch
from benchmarks.step_time import report, suite
from benchmarks.step_time.shapes import DTYPES, QUICK_VOCAB, SIZES, TRANSFORMER, VOCABS

BENCHMARK_SIZES = [size for size in SIZES if size != "quick"]
MODELS = [*CELLS, TRANSFORMER]

flags.DEFINE_list("models", MODELS, f"models to measure, of {', '.join(MODELS)} (the rnn cells and the transformer)")
flags.DEFINE_list("sizes", BENCHMARK_SIZES, "sizes to measure: small (2x200 untied; the transformer at the "
                  "reference's defaults), medium (2x650 tied), large (2x1500 tied; on a CPU only with --include_large)")
flags.DEFINE_list("vocabs", [str(v) for v in VOCABS], "vocabulary sizes to measure, e.g. 10000 (PTB's) and 33278 "
                  f"(WikiText-2's); --quick measures {QUICK_VOCAB} only")
flags.DEFINE_list("dtypes", None, f"matmul dtypes to measure, of {', '.join(DTYPES)} (lm_jax's "
                  "config.model.matmul_dtype, PyTorch's CPU/CUDA autocast); default: both where the device has "
                  "native bfloat16 (an accelerator, or a CPU with amx_bf16 or avx512_bf16), else float32")
flags.DEFINE_integer("rounds", 3, "alternating lm_jax/PyTorch worker pairs per config (--quick: 1)")
flags.DEFINE_integer("steps", None, "timed train steps per worker (default 20; --quick: 3)")
flags.DEFINE_string("output_dir", None, "where the report goes (default benchmarks/results; --quick: a new "
                    "temporary directory)")
flags.DEFINE_bool("include_large", False, "measure the large size on a CPU too (slow)")
flags.DEFINE_bool("quick", False, "smoke test: tiny shapes, one round, a few steps; the timings mean nothing")
FLAGS = flags.FLAGS


def chosen_vocabs() -> list[int]:
  return [QUICK_VOCAB] if FLAGS.quick else [int(v) for v in FLAGS.vocabs]


def chosen_dtypes(bfloat16_support: str | None) -> tuple[list[str], str]:
  """The dtypes to measure and why (recorded in the report)."""
  if FLAGS.dtypes:
    return FLAGS.dtypes, "chosen with --dtypes"
  if bfloat16_support:
    return list(DTYPES), f"native bfloat16 ({bfloat16_support})"
  return ["float32"], "no native bfloat16 on this device; --dtypes=float32,bfloat16 measures it emulated"


def chosen_sizes(platform: str) -> list[str]:
  if FLAGS.quick:
    return ["quick"]
  if platform == "cpu" and "large" in FLAGS.sizes and not FLAGS.include_large:
    progress("skipping the large size on a CPU; pass --include_large to measure it")
    return [size for size in FLAGS.sizes if size != "large"]
  return FLAGS.sizes


def check_flags() -> None:
  for name, values, allowed in (("models", FLAGS.models, MODELS), ("sizes", FLAGS.sizes, BENCHMARK_SIZES),
                                ("dtypes", FLAGS.dtypes or [], DTYPES)):
    unknown = sorted(set(values) - set(allowed))
    if unknown:
      raise UserError(f"unknown {name} {', '.join(unknown)}; use some of {', '.join(allowed)}")
  if not all(v.isdigit() and int(v) >= 2 for v in FLAGS.vocabs):
    raise UserError(f"--vocabs must be whole numbers >= 2 (got {','.join(FLAGS.vocabs)}); pass e.g. "
                    "--vocabs=10000,33278")
  if FLAGS.rounds < 1 or (FLAGS.steps is not None and FLAGS.steps < 1):
    raise UserError("--rounds and --steps must be >= 1")
  require_torch()


def main(argv: list[str]) -> None:
  del argv
  check_flags()
  machine = suite.describe_machine(FLAGS.quick)
  rounds = 1 if FLAGS.quick else FLAGS.rounds
  dtypes, dtypes_reason = chosen_dtypes(machine["bfloat16_support"])
  reference = reference_config().optim  # clip 0.25, SGD lr 20 for both frameworks
  shapes = suite.shapes(FLAGS.models, chosen_sizes(machine["platform"]), chosen_vocabs(), dtypes, reference.lr,
                        reference.clip, FLAGS.steps)
  configs = [suite.measure_config(shape, rounds, machine["bandwidth_gb_per_s"]) for shape in shapes]
  results = suite.results(machine, configs, rounds, FLAGS.quick, dtypes_reason)
  output.write_report(output.output_dir(FLAGS.output_dir, FLAGS.quick), machine["name"], results,
                      report.markdown(results), report.plot)


if __name__ == "__main__":
  run_main(main, required_flags=[])
