"""lm-jax-evaluate: perplexity of a workdir's best model on a split, by the reference's rule."""

from __future__ import annotations

from absl import flags

from lm_jax.cli.common import run_main
from lm_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "valid", "test"], "Split to score.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Score this directory's split instead of the training data.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 10, "Evaluation batch size (the reference uses 10).")


def main(argv: list[str]) -> None:
  if _BATCH_SIZE.value <= 0:
    raise UserError(f"--batch_size must be > 0 (got {_BATCH_SIZE.value}); pass e.g. --batch_size=10")
  from lm_jax import optim, trained
  from lm_jax.data.batching import put_on_device
  from lm_jax.data.sources import load_corpus
  from lm_jax.evaluate import Evaluator

  run = trained.load(_WORKDIR.value)
  data_config = run.config.data
  if _DATA_DIR.value:
    data_config = data_config.copy_and_resolve_references()
    data_config.update(source="dir", dir=_DATA_DIR.value)
  corpus = load_corpus(data_config)
  if corpus.vocab != run.vocab:
    raise UserError(f"the data's vocabulary ({len(corpus.vocab):,} words) is not the checkpoint's "
                    f"({len(run.vocab):,} words); evaluate on the data the model was trained on")
  split = put_on_device(corpus.ids[_SPLIT.value], _BATCH_SIZE.value, run.config.bptt, _SPLIT.value)
  loss = Evaluator(run.model, run.config.bptt).mean_nll(run.params, split)
  print(f"| {_SPLIT.value} loss {loss:5.3f} | {_SPLIT.value} ppl {optim.perplexity(loss):8.2f} | "
        f"{split.num_tokens_scored:,} tokens scored")


def run() -> None:
  run_main(main, ["workdir"])


if __name__ == "__main__":
  run()
