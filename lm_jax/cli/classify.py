"""lm-jax-classify: train a text classifier, as the config file says, into --workdir.

  lm-jax-classify --config=configs/classify_synthetic.py --workdir=runs/classify [--config.FIELD=VALUE ...]

Every config field: lm_jax/classify/config.py (the loop and optimiser), lm_jax/classify/data/config.py (the corpus
and its text handling), lm_jax/classify/models/ (each classifier's fields). Ready-made configs, each with its run
command in its docstring: configs/classify_*.py. A corpus without a test split (MR) is cross-validated: one run
per fold in <workdir>/fold-K, then the folds' mean and std. --resume continues a run (each fold) exactly.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from lm_jax.cli.common import config_file_flags_parser, run_main, train_until_preempted

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/classify_synthetic.py.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and TensorBoard events.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run of the same config held in --workdir (if any).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the run held in --workdir.")


def main(argv: list[str]) -> None:
  from lm_jax.classify.train import train_and_evaluate  # After flag parsing, so --help stays fast.

  train_until_preempted(argv[0], lambda: train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value,
                                                            overwrite=_OVERWRITE.value))


def run() -> None:
  run_main(main, ["config", "workdir"], flags_parser=config_file_flags_parser(_CONFIG))


if __name__ == "__main__":
  run()
