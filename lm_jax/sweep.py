"""Sweeps, planned: a config file and the fields to vary (a grid: every combination; zipped lists: their
i-th values together), each run an ordinary run of the task's command (lm_jax/tasks.py; lm-jax-train for
language models) in a workdir of its own under the sweep's.
The plan is recorded in `<workdir>/sweep.json`; everything is checked before anything is written.

Syntax: `--grid='model.cell=lstm,gru;model.nlayers=1,2'` (4 runs), `--zip='model.emsize=200,650;model.nhid=200,650'`
(2 runs; with a grid, every grid combination with each), `--set='epochs=6;data.dir=...'` (every run). Values
are read as `--config.FIELD=VALUE` is, by the field's type; a comma inside brackets stays in the value
(`optim.when=(5,10),(8,)`), and `""` is the empty string (`model.pretrained_embeddings="",glove.txt`: trained
against pretrained embeddings in one sweep).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import os
import re

from lm_jax import config_file, tasks
from lm_jax.errors import UserError
from lm_jax.workdir import write_atomically

MANIFEST = "sweep.json"
EXAMPLE = "e.g. --grid='model.cell=lstm,gru;model.nlayers=1,2'"
EMPTY = '""'  # a listed value meaning the empty string
_FIELD_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

Fields = tuple[tuple[str, tuple[str, ...]], ...]  # (field, its values) in the order given


@dataclasses.dataclass(frozen=True)
class Run:
  name: str                                 # its workdir under the sweep's, from the varied fields' values
  varied: tuple[tuple[str, str], ...]       # (field, value as given)


@dataclasses.dataclass(frozen=True)
class Sweep:
  config: str                               # --config, FILE[:ARG]
  grid: Fields                              # every combination of these fields' values
  zipped: Fields                            # these fields' i-th values together, all lists of one length
  fixed: tuple[tuple[str, str], ...] = ()   # (field, value) for every run
  task: str = "lm"                          # lm_jax/tasks.py: whose command runs each run

  @property
  def varied_fields(self) -> list[str]:
    return [field for field, _ in self.grid + self.zipped]

  def runs(self) -> list[Run]:
    """The grid's combinations (the last field varying fastest), each with every row of the zipped lists."""
    grid_rows = itertools.product(*[[(field, v) for v in values] for field, values in self.grid])
    zip_rows = list(zip(*[[(field, v) for v in values] for field, values in self.zipped])) or [()]
    return [Run(_run_name(g + z, self.varied_fields), g + z) for g, z in itertools.product(grid_rows, zip_rows)]

  def overrides(self, run: Run) -> list[str]:
    """The run's `--config.FIELD=VALUE` flags: the fixed fields, then its varied ones."""
    return [f"--config.{field}={'' if value == EMPTY else value}" for field, value in self.fixed + run.varied]

  def train_args(self, run: Run, workdir: str) -> list[str]:
    """The task command's arguments for `run` of this sweep in `workdir`: resumable, so a command run twice
    continues."""
    return [f"--config={self.config}", *self.overrides(run), f"--workdir={os.path.join(workdir, run.name)}",
            "--resume"]

  def flags(self) -> dict[str, str]:
    """The sweep as the lm-jax-sweep flags that plan it."""
    return {"config": self.config, "grid": _fields_text(self.grid), "zip": _fields_text(self.zipped),
            "set": ";".join(f"{field}={value}" for field, value in self.fixed), "task": self.task}

  def to_json(self) -> str:
    return json.dumps({"config": self.config, "task": self.task, "grid": dict(self.grid), "zip": dict(self.zipped),
                       "set": dict(self.fixed),
                       "runs": [{"name": run.name, "varied": dict(run.varied)} for run in self.runs()]}, indent=2)

  @classmethod
  def from_json(cls, text: str) -> Sweep:
    held = json.loads(text)
    as_fields = lambda d: tuple((field, tuple(values)) for field, values in d.items())
    # A manifest written before sweeps had tasks is a language-model sweep.
    return cls(held["config"], as_fields(held["grid"]), as_fields(held["zip"]), tuple(held["set"].items()),
               held.get("task", "lm"))


def plan(config: str, grid: str = "", zipped: str = "", fixed: str = "", task: str = "lm") -> Sweep:
  """The sweep of `config` over the --grid, --zip and --set texts, every run's config loaded and validated as
  the task's command would. Raises UserError naming the flag, the field or the run at fault; writes nothing."""
  command = tasks.task(task)
  config_file_part, colon, argument = config.partition(":")
  sweep = Sweep(os.path.normpath(config_file_part) + colon + argument, _parse_fields(grid, "grid"),
                _parse_fields(zipped, "zip"), _parse_fixed(fixed), task)
  for field, values in sweep.grid:
    if len(set(values)) < len(values):
      raise UserError(f"--grid: {field} lists a value twice ({','.join(values)}); list each value once")
  if not sweep.varied_fields:
    raise UserError(f"nothing to sweep: pass --grid or --zip ({EXAMPLE}); a single run is {command.script}'s")
  lengths = {field: len(values) for field, values in sweep.zipped}
  if len(set(lengths.values())) > 1:
    raise UserError(f"--zip lists have different lengths ({', '.join(f'{f}: {n}' for f, n in lengths.items())}); "
                    "zipped fields need one value each per run")
  _check_fields(sweep)
  runs = sweep.runs()
  names = [run.name for run in runs]
  if len(set(names)) < len(names):
    twice = next(name for name in names if names.count(name) > 1)
    raise UserError(f"two runs would share the directory {twice!r}; give each run its own values (characters a "
                    "file name cannot hold count as one)")
  for run in runs:
    try:
      command.validate(config_file.load(sweep.config, sweep.overrides(run)))
    except UserError as e:
      raise UserError(f"run {run.name}: {e}") from None
  return sweep


def claim(sweep: Sweep, workdir: str) -> None:
  """Records the sweep in `workdir`/sweep.json, or checks that the sweep held there is this one (a sweep is
  continued by the command that started it). Raises UserError before writing anything otherwise."""
  path = os.path.join(workdir, MANIFEST)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"--workdir={workdir} is a file; pass a directory")
  if os.path.exists(path):
    held = read(workdir).flags()
    differences = [f"--{flag}: {held[flag]!r} -> {given!r}" for flag, given in sweep.flags().items()
                   if held[flag] != given]
    if differences:
      raise UserError(f"--workdir={workdir} holds another sweep ({'; '.join(differences)}); use another --workdir, "
                      "or that sweep's flags to continue it")
    return
  if os.path.isdir(workdir) and os.listdir(workdir):
    raise UserError(f"--workdir={workdir} holds files but no {MANIFEST}; pass a new or empty directory")
  os.makedirs(workdir, exist_ok=True)
  write_atomically(path, sweep.to_json() + "\n")


def read(workdir: str) -> Sweep:
  """The sweep recorded in `workdir`."""
  path = os.path.join(workdir, MANIFEST)
  if not os.path.isfile(path):
    raise UserError(f"{workdir} holds no {MANIFEST}; pass the --workdir of a sweep")
  with open(path) as f:
    return Sweep.from_json(f.read())


def _parse_fields(text: str, flag: str) -> Fields:
  """`a=1,2;b=x,y` -> (('a', ('1', '2')), ('b', ('x', 'y')))."""
  parsed = []
  for field, value in _assignments(text, flag):
    values = tuple(v.strip() for v in _split_top_level(value))
    if not all(values):
      raise UserError(f"--{flag}: {field}={value} has an empty value; list values as {field}=V1,V2 ({EMPTY} for the "
                      "empty string)")
    parsed.append((field, values))
  return tuple(parsed)


def _parse_fixed(text: str) -> tuple[tuple[str, str], ...]:
  """`epochs=2;data.dir=x` -> (('epochs', '2'), ('data.dir', 'x')): one value each, commas and all."""
  fixed = tuple(_assignments(text, "set"))
  empty = [field for field, value in fixed if not value]
  if empty:
    raise UserError(f"--set: {empty[0]} has no value; write {empty[0]}=VALUE")
  return fixed


def _assignments(text: str, flag: str) -> list[tuple[str, str]]:
  """The `FIELD=VALUE` parts of a `;`-separated flag, each field once and well formed."""
  assignments = []
  for part in filter(None, (p.strip() for p in text.split(";"))):
    field, equals, value = (s.strip() for s in part.partition("="))
    if not equals or not _FIELD_NAME.fullmatch(field):
      raise UserError(f"--{flag}: {part!r} is not FIELD=VALUES; separate fields with ';' and values with ',' "
                      f"({EXAMPLE})")
    if field in dict(assignments):
      raise UserError(f"--{flag}: {field} is given twice; give each field once")
    assignments.append((field, value))
  return assignments


def _split_top_level(value: str) -> list[str]:
  """Splits at the commas outside brackets: `(5,10),(8,)` -> ['(5,10)', '(8,)']."""
  parts, depth, start = [], 0, 0
  for i, char in enumerate(value):
    depth += (char in "([{") - (char in ")]}")
    if char == "," and depth == 0:
      parts.append(value[start:i])
      start = i + 1
  return parts + [value[start:]]


def _check_fields(sweep: Sweep) -> None:
  """Every field names a config field (the config file loads first), and none is given in two flags."""
  known = config_file.fields(config_file.load(sweep.config))
  given = [(flag, field) for flag, fields in (("grid", sweep.grid), ("zip", sweep.zipped), ("set", sweep.fixed))
           for field, _ in fields]
  for flag, field in given:
    if field not in known:
      close = difflib.get_close_matches(field, known, n=1)
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise UserError(f"--{flag} names {field}, which is not a config field{hint}; fix the name "
                      f"({config_file.FIELDS_HELP})")
  for (flag_a, a), (flag_b, b) in itertools.combinations(given, 2):
    if a == b:
      raise UserError(f"{a} is given in both --{flag_a} and --{flag_b}; give each field in one of them")


def _run_name(varied: tuple[tuple[str, str], ...], varied_fields: list[str]) -> str:
  """`cell=gru,nlayers=2`: each field by its last part unless two varied fields share it, in characters a
  file name can hold everywhere."""
  last = [field.rsplit(".", 1)[-1] for field in varied_fields]
  short = {field: name if last.count(name) == 1 else field for field, name in zip(varied_fields, last)}
  return re.sub(r"[^\w.,=+-]", "_", ",".join(f"{short[field]}={value}" for field, value in varied), flags=re.ASCII)


def _fields_text(fields: Fields) -> str:
  return ";".join(f"{field}={','.join(values)}" for field, values in fields)
