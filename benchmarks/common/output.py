"""Where a benchmark command's report goes, and writing it: <name>.json, .md and .png in one directory."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

from lm_jax.workdir import write_atomically

from benchmarks.common.worker import REPO, progress


def output_dir(requested: str | None, quick: bool) -> Path:
  """--output_dir when given, else benchmarks/results; a --quick run's default is a new temporary directory,
  so its meaningless timings never replace a real report."""
  if requested:
    return Path(requested)
  return Path(tempfile.mkdtemp(prefix="lm_jax_bench_")) if quick else REPO / "benchmarks" / "results"


def write_report(directory: Path, name: str, results: dict, text: str,
                 plot: Callable[[dict, Path], bool]) -> None:
  """Writes <name>[-quick].json (`results`), .md (`text`) and .png (`plot`), prints `text`, and says where."""
  directory.mkdir(parents=True, exist_ok=True)
  stem = directory / (name + ("-quick" if results["quick"] else ""))
  write_atomically(str(stem.with_suffix(".json")), json.dumps(results, indent=1) + "\n")
  write_atomically(str(stem.with_suffix(".md")), text)
  plotted = plot(results, stem.with_suffix(".png"))
  print(text)
  progress(f"wrote {stem}.md, .json" + (" and .png" if plotted else ""))
