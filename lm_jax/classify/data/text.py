"""Text to token ids: Kim's clean_str, lower-casing, whitespace tokenisation, a vocabulary with a minimum count,
and encoding cut to a maximum length.

clean_str follows yoonkim/CNN_sentence's process_data.py rule for rule: every character but A-Z a-z 0-9 ( ) , ! ?
' ` becomes a space (so does any non-ASCII letter: `café` -> `caf`); the clitics 's 've n't 're 'd 'll are split
off; , ! ( ) ? become tokens of their own. Two departures, both deliberate: the original writes "\\(", "\\)" and
"\\?" as replacements, which Python keeps as backslash-parenthesis tokens (harvardnlp's sent-conv-torch writes
plain "(", ")", "?", as here); and lower-casing is the separate `lowercase` option, applied after the rules as
clean_str does (Kim's TREC variant skips it). Kim's SST variant, clean_str_sst, only does the first rule; SST's
text is already tokenised (`does n't`, `it 's`, ` , `), so the full rules change its tokens only where , ! ? sit
inside one (`2,500`, `!?`): 4 of the 9,613 binary sentences, 23 of SST-2's 70,042 phrases. One clean_str serves
every corpus.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np

from lm_jax.data.vocab import Vocabulary
from lm_jax.errors import UserError

PAD, UNK = "<pad>", "<unk>"
PAD_ID = 0  # build_vocabulary's; <unk> is its id 1

# Kim's thirteen substitutions in three passes. The clitic and punctuation rules never create or break each
# other's matches, so one pass of each group gives what the rules give one by one (tests/test_classify_data.py
# checks this against the rules as Kim lists them); every whitespace run is then one space, as his last rule does.
_NOT_KEPT = re.compile(r"[^A-Za-z0-9(),!?'`]")
_CLITICS = re.compile(r"'s|'ve|n't|'re|'d|'ll")
_OWN_TOKENS = re.compile(r"[,!()?]")


def clean_str(text: str) -> str:
  """Kim's clean_str rules (module docstring), without its lower-casing."""
  text = _NOT_KEPT.sub(" ", text)
  text = _CLITICS.sub(r" \g<0>", text)
  return " ".join(_OWN_TOKENS.sub(r" \g<0> ", text).split())


def tokenize(text: str, *, clean: bool, lowercase: bool) -> list[str]:
  """The text's tokens: clean_str's rules if `clean`, then lower-cased if `lowercase`, split on whitespace."""
  if clean:
    text = clean_str(text)
  return (text.lower() if lowercase else text).split()


def build_vocabulary(token_lists: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
  """`<pad>` (id 0), `<unk>` (id 1), then every word seen at least `min_count` times, most frequent first (ties
  in order of first appearance). Built from the training split only: other splits' new words are `<unk>`."""
  if min_count < 1:
    raise UserError(f"config.data.min_count must be >= 1 (got {min_count}); pass --config.data.min_count=N")
  counts = collections.Counter(token for tokens in token_lists for token in tokens)
  by_frequency = sorted(counts.items(), key=lambda item: -item[1])  # stable: ties keep first appearance
  return Vocabulary([PAD, UNK] + [w for w, n in by_frequency if n >= min_count and w not in (PAD, UNK)])


def encode(token_lists: Iterable[Sequence[str]], vocab: Vocabulary, max_len: int) -> tuple[list[np.ndarray], int]:
  """Each token list as int32 ids (unknown words: the vocabulary's `<unk>`), cut to its first `max_len` tokens; also
  returns how many lists were cut (for the caller's note)."""
  index = vocab.index
  unk_id = index.get(UNK)
  token_lists = list(token_lists)
  if unk_id is None:  # a vocabulary read from elsewhere (an LM run's) may lack <unk>: fine while every word is in it
    unknown = next((t for tokens in token_lists for t in tokens[:max_len] if t == PAD or t not in index), None)
    if unknown is not None:
      raise UserError(f"the word {unknown!r} is not in the vocabulary, which has no {UNK} for words it never saw; "
                      "use a vocabulary with <unk> (lm-jax-classify-corpus writes LM text with <unk> for rare words)")
  ids, num_cut = [], 0
  for tokens in token_lists:
    num_cut += len(tokens) > max_len
    # A literal "<pad>" in the text is a word like any other unknown one, never padding.
    ids.append(np.array([unk_id if t == PAD else index.get(t, unk_id) for t in tokens[:max_len]], dtype=np.int32))
  return ids, num_cut
