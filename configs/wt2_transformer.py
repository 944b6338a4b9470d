"""WikiText-2, the reference's Transformer: `python main.py --model Transformer` of PyTorch's
word_language_model (emsize 200, nhead 2, feed-forward nhid 200, 2 post-norm layers, dropout 0.2 on the
positional encoding and nn.Transformer's 0.1 inside the layers, untied, lr 20 / 4 on a stall, clip 0.25,
40 epochs, batch 20, bptt 35). The same as configs/default.py with --config.model.kind=transformer.

  lm-jax-train --config=configs/wt2_transformer.py --config.data.dir=../shared/data/wikitext-2 --workdir=runs/wt2_transformer

Beyond the reference (lm_jax/models/transformer.py): --config.model.pre_norm=True,
--config.model.memory=35 (carry the previous window's keys/values), --config.model.transformer_tied=True.
"""

from lm_jax.config import reference_config


def get_config():
  c = reference_config()
  c.model.kind = "transformer"
  return c
