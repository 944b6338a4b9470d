"""A classification corpus's text as a language-model corpus, for ULMFiT's second step (a general LM fine-tuned on the
target text): the training split's documents, tokenised as the classifier reads them (config.data's clean_str and
case), one document per line in train.txt, valid.txt and test.txt, the layout lm-jax-train's `dir` source reads.

Only the corpus's training split is read, without its labels (a cross-validated corpus such as MR has only that
split, so every fold's test sentences are in it: text the LM may see, as ULMFiT fine-tunes on all of a dataset's
text). A `held_out` fraction of its documents, drawn from `seed`, goes half to valid.txt and half to test.txt; the
rest go to train.txt in an order drawn from the seed (a corpus sorted by class would otherwise put each class in its
own columns of the LM's batches). Words seen fewer than `min_count` times in train.txt are written as `<unk>`, and so
are held-out words train.txt lacks: the LM's vocabulary is train.txt's words and `<unk>`, and so the classifier's. With
min_count 2 (fastai's) the LM learns `<unk>` from the rare words; with 1, `<unk>` appears only where held-out text has
new words (a WikiText-2 LM being fine-tuned brings its own `<unk>` row), and a vocabulary without it cannot read
unknown words at all (the classifier refuses them by name).
"""

from __future__ import annotations

import collections
import dataclasses
import os

import ml_collections
import numpy as np

from lm_jax.classify.data.config import load_corpus
from lm_jax.classify.data.prepare import tokenize_texts
from lm_jax.data.vocab import UNK
from lm_jax.errors import UserError
from lm_jax.workdir import write_atomically

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Written:
  documents: dict[str, int]  # per split
  tokens: dict[str, int]     # per split, without the <eos> each line gets
  unknown: dict[str, int]    # tokens written as <unk>, per split
  vocab_size: int            # train.txt's distinct words, <unk> included


def write_lm_corpus(data_config: ml_collections.ConfigDict, output: str, *, held_out: float = 0.1, min_count: int = 2,
                    seed: int = 0) -> Written:
  """Writes `output`/{train,valid,test}.txt from the training split of the corpus `data_config` names."""
  if not 0.0 < held_out < 1.0:
    raise UserError(f"--held_out must be in (0, 1) (got {held_out}); pass e.g. 0.1")
  if min_count < 1:
    raise UserError(f"--min_count must be >= 1 (got {min_count}); pass 2 (fastai's) or 1 (every training word kept)")
  existing = [name for name in SPLITS if os.path.exists(os.path.join(output, f"{name}.txt"))]
  if existing:
    raise UserError(f"{os.path.join(output, existing[0] + '.txt')} exists; pass a new or empty --output folder")
  documents = [tokens for tokens in tokenize_texts(load_corpus(data_config).splits["train"].texts, data_config)
               if tokens]
  order = np.random.default_rng(seed).permutation(len(documents))
  held = max(2, round(held_out * len(documents)))
  if held >= len(documents):
    raise UserError(f"the training split has {len(documents)} documents, too few to hold {held} out; lower --held_out")
  parts = {"train": order[held:], "valid": order[:held // 2], "test": order[held // 2:held]}
  counts = collections.Counter(token for i in parts["train"] for token in documents[i])
  known = {word for word, count in counts.items() if count >= min_count} - {UNK}
  lines, unknown = {}, {}
  for name, members in parts.items():
    split = [[token if token in known else UNK for token in documents[i]] for i in members]
    unknown[name] = sum(token == UNK for tokens in split for token in tokens)
    lines[name] = "".join(" ".join(tokens) + "\n" for tokens in split)
  os.makedirs(output, exist_ok=True)
  for name in SPLITS:
    write_atomically(os.path.join(output, f"{name}.txt"), lines[name].encode("utf-8"))
  return Written({name: len(members) for name, members in parts.items()},
                 {name: sum(len(documents[i]) for i in members) for name, members in parts.items()},
                 unknown, len(known) + 1)
