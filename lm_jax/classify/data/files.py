"""Reading text files the way the corpora need: bytes decoded with a named encoding (a failure names the file,
the line and the option that fixes it), lines split on "\\n" only (read as latin-1, MR's byte 0x85 is U+0085,
which str.splitlines() would also break at: 10,685 lines for 10,662), a CRLF's "\\r" dropped."""

from __future__ import annotations

import os

from lm_jax.errors import UserError

ENCODING_FIX = "set --config.data.encoding to the file's encoding (latin-1 reads any byte)"


def decode(raw: bytes, encoding: str, where: str) -> str:
  """`raw` decoded; a byte the encoding cannot read is a UserError naming `where` and the line."""
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise UserError(f"{where} line {line} is not {encoding} text (byte 0x{raw[e.start]:02x}); {ENCODING_FIX}"
                    ) from None


def read_text(path: str, encoding: str) -> str:
  with open(path, "rb") as f:
    return decode(f.read(), encoding, path)


def numbered_lines(path: str, encoding: str) -> list[tuple[int, str]]:
  """(line number from 1, line) for each line of the file holding more than whitespace, split on "\\n" only."""
  lines = read_text(path, encoding).split("\n")
  return [(number, line.removesuffix("\r")) for number, line in enumerate(lines, 1) if line.strip()]


def require_files(directory: str, names: list[str], what: str, option: str = "path") -> None:
  """Each of `names` must be a file in `directory`; else one line naming the first one missing."""
  if not os.path.isdir(directory):
    raise UserError(f"{what}: {directory!r} is not a folder; set --config.data.{option} to the folder holding "
                    f"{', '.join(names)}")
  for name in names:
    if not os.path.isfile(os.path.join(directory, name)):
      raise UserError(f"{what}: {directory!r} has no {name}; set --config.data.{option} to the folder holding "
                      f"{', '.join(names)}")
