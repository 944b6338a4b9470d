"""lm-jax-export: a workdir's best model -> a PyTorch state_dict the reference's model loads, the inverse of
lm-jax-import.

  lm-jax-export --workdir=runs/awd_ptb --output=awd_ptb.pt [--reference=awd-lstm-lm]

Writes `torch.save(state_dict)` of the best checkpoint's parameters (under NT-ASGD its averaged weights, what
awd-lstm-lm's main.py saves), with the reference's tensor names and layouts, and prints how to load it there:
`model.load_state_dict(torch.load(path))`. --reference picks the reference model (default: the first that holds
the model: an AWD-LSTM whose last layer is smaller goes to awd-lstm-lm). Only tensors are written, no pickled
code; to run awd-lstm-lm's scripts on it, build its RNNModel as printed, load the state_dict, and save it as its
scripts expect (docs/awd.md).
"""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import require_output_folder, run_main

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training (or imported) run.")
_OUTPUT = flags.DEFINE_string("output", None, "The file to write: a .pt state_dict (lm-jax-export: or a .jax "
                              "serving artifact).")
_REFERENCE = flags.DEFINE_enum("reference", None, ["word_language_model", "awd-lstm-lm",
                                                   "word_language_model-transformer"],
                               "The reference model to export to (default: the first that holds the model).")


def main(argv: list[str]) -> None:
  require_output_folder("output", _OUTPUT.value)
  from lm_jax import checkpoints, convert, optim, trained

  convert.require_torch("writing a PyTorch checkpoint")
  run = trained.load(_WORKDIR.value)
  meta = checkpoints.restore_meta(_WORKDIR.value, checkpoints.BEST)
  state_dict = convert.export_state_dict(run.model, run.params, _REFERENCE.value)
  reference = convert.reference_of(run.model, run.params, _REFERENCE.value)
  convert.save_torch(state_dict, _OUTPUT.value)
  valid = f", valid ppl {optim.perplexity(meta['val_loss']):.2f}" if meta.get("val_loss") is not None else ""
  print(f"| wrote {run.model.describe()}, {run.model.vocab_size:,} words, best parameters (epoch {meta['epoch']}"
        f"{valid}), {len(state_dict)} tensors named as the {convert.CONVERTERS[reference].REFERENCE_CLASS} "
        f"state_dict's, to {_OUTPUT.value}")
  print(f"| load it there: {convert.load_instructions(run.model, reference, _OUTPUT.value)}")


def run() -> None:
  run_main(main, ["workdir", "output"])


if __name__ == "__main__":
  run()
