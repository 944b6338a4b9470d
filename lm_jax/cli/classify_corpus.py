"""lm-jax-classify-corpus: write a classification corpus's training text as a language-model corpus (train.txt,
valid.txt, test.txt in --output), tokenised as the classifier reads it, for fine-tuning a language model on it with
lm-jax-train --config.data.dir=OUTPUT --config.finetune_from=... (ULMFiT's second step; docs/classification.md).

  lm-jax-classify-corpus --config=configs/classify_ulmfit.py:trec --output=runs/ulmfit/trec_text [--held_out=0.1]

The config is the classifier's (its config.data names the corpus and its tokenisation); only the training split is
read, labels aside. Words seen fewer than --min_count times are written as <unk>.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from lm_jax.cli.common import config_file_flags_parser, run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "A classification config file, e.g. "
                                          "configs/classify_ulmfit.py:trec (its config.data is read).", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write train.txt, valid.txt and test.txt into (new or empty).")
_HELD_OUT = flags.DEFINE_float("held_out", 0.1, "Fraction of the documents held out, half for valid.txt, half for "
                               "test.txt.")
_MIN_COUNT = flags.DEFINE_integer("min_count", 2, "Words seen fewer times in train.txt are written as <unk> (>= 1).")


def main(argv: list[str]) -> None:
  from lm_jax.classify.lm_corpus import write_lm_corpus  # After flag parsing, so --help stays fast.

  config = _CONFIG.value
  written = write_lm_corpus(config.data, _OUTPUT.value, held_out=_HELD_OUT.value, min_count=_MIN_COUNT.value,
                            seed=config.seed)
  print(f"| wrote {_OUTPUT.value}: " + ", ".join(
      f"{name}.txt {written.documents[name]:,} documents, {written.tokens[name]:,} tokens "
      f"({100 * written.unknown[name] / max(1, written.tokens[name]):.1f}% <unk>)" for name in written.documents) +
        f"; vocabulary {written.vocab_size:,} words with <unk>")


def run() -> None:
  run_main(main, ["config", "output"], flags_parser=config_file_flags_parser(_CONFIG))


if __name__ == "__main__":
  run()
