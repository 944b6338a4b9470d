"""lm-jax-generate: sample words from a workdir's best model, a line break every 20 words; with
--num_samples=N, N sequences drawn at once, their blocks separated by a blank line."""

from __future__ import annotations

import sys

from absl import flags, logging

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_WORDS = flags.DEFINE_integer("words", 1000, "Number of words to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature; higher is more diverse.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample only among the k most likely words (0: all).")
_PROMPT = flags.DEFINE_string("prompt", "", "Words to start from; unknown words become <unk>.")
_SEED = flags.DEFINE_integer("seed", 1111, "Random seed.")
_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Sequences sampled at once, as one batch; their blocks are "
                                "separated by a blank line. The first is the one --num_samples=1 writes.")
_OUTPUT = flags.DEFINE_string("output", "-", "File to write ('-': stdout).")


def main(argv: list[str]) -> None:
  if _TEMPERATURE.value <= 0:
    raise UserError(f"--temperature must be > 0 (got {_TEMPERATURE.value}); pass e.g. --temperature=1.0")
  if _WORDS.value <= 0:
    raise UserError(f"--words must be > 0 (got {_WORDS.value}); pass e.g. --words=100")
  if _TOP_K.value < 0:
    raise UserError(f"--top_k must be >= 0 (got {_TOP_K.value}); pass 0 for no limit")
  if _SAMPLES.value <= 0:
    raise UserError(f"--num_samples must be > 0 (got {_SAMPLES.value}); pass e.g. --num_samples=4")
  import jax
  import jax.numpy as jnp

  from lm_jax import trained
  from lm_jax.generate import format_words, generate
  from lm_jax.workdir import write_atomically

  run = trained.load(_WORKDIR.value)
  if _TOP_K.value > len(run.vocab):
    raise UserError(f"--top_k {_TOP_K.value} exceeds the vocabulary ({len(run.vocab)} words); pass a smaller k")
  prompt_ids, unknown = run.vocab.encode_with_unk(_PROMPT.value.split())
  if unknown:
    logging.warning("prompt words not in the vocabulary, read as <unk>: %s", " ".join(unknown))
  ids_NxW = generate(run.model, run.params, jax.random.PRNGKey(_SEED.value), _WORDS.value, _TEMPERATURE.value,
                     _TOP_K.value, jnp.asarray(prompt_ids) if len(prompt_ids) else None, _SAMPLES.value)
  text = "\n".join(format_words(run.vocab.decode(ids_W)) for ids_W in jax.device_get(ids_NxW))
  if _OUTPUT.value == "-":
    sys.stdout.write(text)
  else:
    write_atomically(_OUTPUT.value, text)
    print(f"| wrote {_SAMPLES.value} x {_WORDS.value} words to {_OUTPUT.value}")


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
