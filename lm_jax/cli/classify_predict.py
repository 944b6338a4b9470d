"""lm-jax-classify-predict: label texts with a trained classifier, one text per line, from a file or stdin; prints
each line's label and its probability, tab-separated, in order.

  lm-jax-classify-predict --workdir=runs/classify --input=texts.txt
  echo "a gripping , funny film" | lm-jax-classify-predict --workdir=runs/classify
"""

from __future__ import annotations

import sys

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of an lm-jax-classify run (or one of its fold-K folders).")
_INPUT = flags.DEFINE_string("input", "-", "A UTF-8 text file, one text per line; '-' reads stdin.")


def main(argv: list[str]) -> None:
  from lm_jax.classify import trained

  run = trained.load(_WORKDIR.value)  # before reading stdin: a bad workdir fails at once
  try:
    if _INPUT.value == "-":
      texts = sys.stdin.read().split("\n")
    else:
      with open(_INPUT.value, encoding="utf-8") as f:
        texts = f.read().split("\n")
  except OSError as e:
    raise UserError(f"cannot read --input={_INPUT.value} ({e.strerror}); pass a readable text file, or - for stdin")
  except UnicodeDecodeError as e:
    raise UserError(f"--input={_INPUT.value} is not UTF-8 (byte {e.start}); convert it to UTF-8 first")
  if texts and texts[-1] == "":
    texts.pop()  # the newline that ends the last line
  if not texts:
    raise UserError("no text to label: the input is empty; pass one text per line")
  probs_NxC = run.probabilities(texts)
  for probs_C in probs_NxC:
    best = int(probs_C.argmax())
    print(f"{run.classes[best]}\t{probs_C[best]:.4f}")


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
