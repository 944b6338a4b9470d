"""lm-jax-import: a PyTorch word_language_model or awd-lstm-lm checkpoint -> a workdir lm-jax-evaluate,
lm-jax-generate and fine-tuning (--config.finetune_from) read.

  lm-jax-import --checkpoint=PTB.pt --data_dir=data/penn --workdir=runs/awd_imported
"""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import run_main

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "The reference's saved model: a state_dict (torch.save(model.state_dict(), path)), the "
    "whole model word_language_model's main.py and awd-lstm-lm's finetune.py --save write, or the [model, "
    "criterion, optimizer] awd-lstm-lm's main.py writes (under ASGD its averaged weights are taken, as main.py "
    "evaluates them); read without the reference's source, and a file naming any other class or function is "
    "refused, so nothing in it runs.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The data the model was trained on (train.txt, valid.txt, "
                                "test.txt); its vocabulary names the checkpoint's word ids.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory to write the lm_jax checkpoint into.")
_CELL = flags.DEFINE_enum("cell", None, ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"],
                          "The reference's --model; needed only for RNN_TANH and RNN_RELU, which have the same "
                          "tensors (LSTM and GRU are read from the checkpoint).", case_sensitive=False)
_NHEAD = flags.DEFINE_integer("nhead", None, "A TransformerModel's --nhead (attention heads), which no tensor "
                              "records; default the reference's 2.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the run held in --workdir.")


def main(argv: list[str]) -> None:
  from lm_jax.convert import import_checkpoint  # After flag parsing, so --help stays fast.

  model = import_checkpoint(_CHECKPOINT.value, _DATA_DIR.value, _WORKDIR.value, _CELL.value, _OVERWRITE.value,
                            _NHEAD.value, report=print)
  print(f"| imported {model.describe()}, {model.vocab_size:,} words, into {_WORKDIR.value}; "
        f"score it with lm-jax-evaluate --workdir={_WORKDIR.value}")


def run() -> None:
  run_main(main, ["checkpoint", "data_dir", "workdir"])


if __name__ == "__main__":
  run()
