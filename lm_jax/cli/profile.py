"""lm-jax-profile: where a config's train step spends its time, part by part (lm_jax/profile.py).

  lm-jax-profile --config=configs/default.py [--config.FIELD=VALUE ...] [--steps=20] [--plot=profile.png]

Builds the config's model, optimiser and train step, runs them on random tokens at the config's batch and
bptt, and prints a table: embedding, AWD-LSTM's masks, weight drop and locked dropout (where the config has
them), each recurrent layer's forward and backward (also per time step), decoder matmuls, softmax passes,
AR/TAR, optimiser, host overhead and the rest, in ms and % of the step, with the GFLOP/s of the matmul parts
against the machine's measured float32 matmul ceiling (2048^2 @ 2048^2). --plot also writes it as a bar chart
(needs matplotlib). Nothing else is written.

The vocabulary size sets the decoder's cost. It is the corpus's for the synthetic source (built in a
moment); for a corpus on disk or on the Hub, reading it could take minutes, so it is WikiText-2's 33,278
unless --vocab says otherwise. The rnn family only.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from lm_jax.cli.common import config_file_flags_parser, require_output_folder, run_main
from lm_jax.errors import UserError

WIKITEXT2_VOCAB = 33_278
WINDOWS = 4  # distinct windows of random tokens on the device

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/default.py; its fields are "
                                          "described in lm_jax/config.py.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed calls per part (each part's median is reported).")
_PLOT = flags.DEFINE_string("plot", None, "Also write the profile as a bar chart to this PNG file.")
_VOCAB = flags.DEFINE_integer("vocab", None, "Vocabulary size of the random tokens (default: the synthetic "
                              f"corpus's, else WikiText-2's {WIKITEXT2_VOCAB:,}).")


def main(argv: list[str]) -> None:
  config = _CONFIG.value
  _check_flags(config)
  import jax  # After the flag checks, so a bad flag fails fast.

  from lm_jax import config as config_lib, loss, optim, steps
  from lm_jax.data.batching import put_on_device
  from lm_jax.models.registry import model_from_config
  from lm_jax.profile import matmul_ceiling_gflops, plot_png, profile_step, random_tokens
  from lm_jax.workdir import write_atomically

  config_lib.validate(config)
  vocab_size, vocab_source = _vocabulary(config)
  model = model_from_config(config.model, vocab_size)
  optimizer = optim.make_optimizer(config.optim)
  state = steps.TrainState.create(model, optimizer, config.seed, config.batch_size)
  split = put_on_device(random_tokens(vocab_size, config.batch_size, config.bptt, WINDOWS), config.batch_size,
                        config.bptt, "train")
  terms = loss.regularisers(config)
  train_step = steps.make_train_step(model, optimizer, config.bptt, reduction=config.loss_reduction, terms=terms)
  print(f"| {model.describe()}, vocabulary {vocab_size:,} ({vocab_source}), batch {config.batch_size}, "
        f"bptt {config.bptt}, {config.optim.name}; {jax.devices()[0].platform} x {jax.device_count()}; "
        f"{_STEPS.value} timed calls per part")
  profile = profile_step(model, optimizer, state, train_step, split, config.bptt, _STEPS.value,
                         terms=terms, ceiling_gflops=matmul_ceiling_gflops())
  print(profile.table(), end="")
  if _PLOT.value:
    write_atomically(_PLOT.value, plot_png(profile))
    print(f"| wrote the bar chart to {_PLOT.value}")


def _check_flags(config) -> None:
  """Every check that needs no measurement, before any: nothing is half done on a bad flag."""
  if config.model.kind != "rnn":
    raise UserError(f"the time profile covers the rnn family only, not kind={config.model.kind}; profile an rnn "
                    "config")
  if _STEPS.value < 1:
    raise UserError(f"--steps must be >= 1 (got {_STEPS.value}); pass e.g. --steps=20")
  if _VOCAB.value is not None and _VOCAB.value < 2:
    raise UserError(f"--vocab must be >= 2 (got {_VOCAB.value}); pass e.g. --vocab={WIKITEXT2_VOCAB}")
  if _PLOT.value:
    if not _PLOT.value.endswith(".png"):
      raise UserError(f"--plot={_PLOT.value} is not a .png file; pass e.g. --plot=profile.png")
    require_output_folder("plot", _PLOT.value)
    try:
      import matplotlib  # noqa: F401
    except ImportError:
      raise UserError("--plot needs matplotlib; `pip install matplotlib`, or leave --plot out") from None


def _vocabulary(config) -> tuple[int, str]:
  """(size, where it came from)."""
  if _VOCAB.value is not None:
    return _VOCAB.value, "--vocab"
  if config.data.source == "synthetic":
    from lm_jax.data.sources import load_corpus
    return len(load_corpus(config.data).vocab), "the synthetic corpus's"
  return WIKITEXT2_VOCAB, "WikiText-2's; pass --vocab=N for this corpus's"


def run() -> None:
  run_main(main, ["config"], flags_parser=config_file_flags_parser(_CONFIG))


if __name__ == "__main__":
  run()
