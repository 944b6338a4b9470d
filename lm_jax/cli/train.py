"""lm-jax-train: train a word-level language model, as the config file says, into --workdir.

  lm-jax-train --config=configs/default.py --workdir=runs/wt2 [--config.FIELD=VALUE ...]

Every config field, what it means and its reference default: lm_jax/config.py. Ready-made configs,
each with its run command in its docstring: configs/*.py. Any field can be overridden on the command
line, e.g. --config.model.cell=gru --config.epochs=6.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from lm_jax.cli.common import config_file_flags_parser, run_main, train_until_preempted
from lm_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/default.py; its fields are "
                                          "described in lm_jax/config.py.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and TensorBoard events.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run of the same config held in --workdir (if any).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the run held in --workdir.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join a multi-process run (jax.distributed.initialize); on a "
                                 "Cloud TPU VM nothing else is needed.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --distributed elsewhere than on a TPU VM: "
                                   "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: how many processes take part.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this process's index, 0 to "
                                   "num_processes - 1.")


def main(argv: list[str]) -> None:
  from lm_jax import parallel  # After flag parsing, so --help stays fast.
  from lm_jax.train import train_and_evaluate

  cluster = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
             "process_id": _PROCESS_ID.value}
  if _DISTRIBUTED.value:
    parallel.initialize_distributed(**cluster)
  elif any(value is not None for value in cluster.values()):
    given = ", ".join(f"--{k}" for k, v in cluster.items() if v is not None)
    raise UserError(f"{given} given without --distributed; add --distributed to join a multi-process run")
  train_until_preempted(argv[0], lambda: train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value,
                                                            overwrite=_OVERWRITE.value))


def run() -> None:
  run_main(main, ["config", "workdir"], flags_parser=config_file_flags_parser(_CONFIG))


if __name__ == "__main__":
  run()
