"""lm-jax-train: parse flags, then train_and_evaluate(config, workdir). Nothing else lives here."""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from lm_jax.cli.common import run_main

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/default.py.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and TensorBoard events.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run of the same config held in --workdir.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the run held in --workdir.")


def main(argv: list[str]) -> None:
  from lm_jax.train import train_and_evaluate  # After flag parsing, so --help stays fast.

  train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value, overwrite=_OVERWRITE.value)


def run() -> None:
  run_main(main, ["config", "workdir"])


if __name__ == "__main__":
  run()
