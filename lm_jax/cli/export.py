"""lm-jax-export: a workdir's best model for use outside lm_jax, as a jax.export artifact or a PyTorch state_dict.

  lm-jax-export --workdir=runs/wt2 --output=model.jax [--platforms=cpu,cuda] [--context=1024] [--overwrite]
  lm-jax-export --workdir=runs/awd_ptb --output=awd_ptb.pt [--reference=awd-lstm-lm] [--overwrite]

An --output ending in .jax is a serving artifact: one zip file holding jax.export's serialized StableHLO of

  score(weights, tokens int32[batch, steps], state) -> (logits float32[batch, steps, V], state)
  step(weights, token int32[batch], state)          -> (logits float32[batch, V], state)

for any batch and any number of steps (symbolic shapes), lowered for each of --platforms, the weights
(weights.npz) and manifest.json: the vocabulary, these shapes, and the state's arrays (the family's decoding
state: an RNN's per-layer state, a Transformer's key/value cache of --context positions; zeros at the start of a
text). It runs where jax and flatbuffers are installed, without lm_jax: README.md's "Serving" has the lines that
load and call it, docs/serving.md the details. Any other --output is the reference's PyTorch state_dict
(lm_jax/cli/export_torch.py). An existing --output is replaced only with --overwrite.
"""

from __future__ import annotations

import importlib.util
import os

from absl import flags

from lm_jax.cli import export_torch  # --workdir, --output, --reference and the state_dict export
from lm_jax.cli.common import require_output_folder, run_main
from lm_jax.errors import UserError

SERVING_SUFFIX = ".jax"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for

_PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "(.jax) Platforms to lower for, some of cpu,cuda,rocm,tpu; "
                               "the artifact runs on each.")
_CONTEXT = flags.DEFINE_integer("context", 1024, "(.jax) Positions the decoding state holds: a Transformer's "
                                "key/value cache, the most words a word attends to; an RNN's state is the same size "
                                "for any.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
flags.adopt_module_key_flags(export_torch)
SERVING_FLAGS, TORCH_FLAGS = ("platforms", "context"), ("reference",)  # each refused with the other format


def main(argv: list[str]) -> None:
  output = flags.FLAGS.output
  serving_output = output.endswith(SERVING_SUFFIX)
  for name in TORCH_FLAGS if serving_output else SERVING_FLAGS:
    if flags.FLAGS[name].present:
      raise UserError(f"--{name} is for {'a PyTorch' if serving_output else f'a {SERVING_SUFFIX}'} --output, not "
                      f"{output}; drop it, or name the output accordingly")
  require_output_folder("output", output)
  if os.path.isdir(output):
    raise UserError(f"--output={output} is a folder; pass a file path")
  if os.path.exists(output) and not _OVERWRITE.value:
    raise UserError(f"--output={output} already exists; pass --overwrite to replace it, or another path")
  if serving_output:
    _check_serving_flags()
    export_for_serving(flags.FLAGS.workdir, output)
  else:
    export_torch.main(argv)


def _check_serving_flags() -> None:
  unknown = sorted(set(_PLATFORMS.value) - set(PLATFORMS))
  if unknown or not _PLATFORMS.value:
    raise UserError(f"--platforms={','.join(_PLATFORMS.value)}: {', '.join(unknown) or 'none given'}; use some of "
                    f"{','.join(PLATFORMS)}, e.g. --platforms=cpu,cuda")
  if _CONTEXT.value <= 0:
    raise UserError(f"--context must be > 0 (got {_CONTEXT.value}): the positions the decoding state holds, e.g. 1024")
  if importlib.util.find_spec("flatbuffers") is None:  # jax.export's serialization needs it; jax does not require it
    raise UserError("writing a jax.export artifact needs the flatbuffers package: pip install flatbuffers "
                    "(or lm_jax's extra: pip install -e '.[export]')")


def export_for_serving(workdir: str, output: str) -> None:
  from lm_jax import checkpoints, optim, serving, trained, workdir as workdir_lib

  run = trained.load(workdir)
  meta = checkpoints.restore_meta(workdir, checkpoints.BEST)
  valid_ppl = optim.perplexity(meta["val_loss"]) if meta.get("val_loss") is not None else None
  about = {"checkpoint": {"workdir": os.path.abspath(workdir), "epoch": meta["epoch"], "valid_ppl": valid_ppl}}
  blob = serving.export(run.model, run.params, run.vocab.words, platforms=_PLATFORMS.value, context=_CONTEXT.value,
                        about=about)
  workdir_lib.write_atomically(output, blob)
  valid = f", valid ppl {valid_ppl:.2f}" if valid_ppl is not None else ""
  print(f"| wrote {run.model.describe()}, {run.model.vocab_size:,} words, best parameters (epoch {meta['epoch']}"
        f"{valid}), score and step for {','.join(_PLATFORMS.value)} ({len(blob) / 1e6:.1f} MB) to {output}")
  print("| run it with jax alone: README.md's 'Serving'; its shapes are in the zip's manifest.json")


def run() -> None:
  run_main(main, ["workdir", "output"])


if __name__ == "__main__":
  run()
