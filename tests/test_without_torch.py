"""lm_jax imports and runs without PyTorch (an optional extra): every library module imports, and a tiny run trains,
evaluates and generates, in a process where `import torch` fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


PROGRAM = textwrap.dedent("""
    import importlib, pkgutil, sys, tempfile
    import jax
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import lm_jax
    # Each CLI module defines its absl flags on import (one per process): they import the library lazily, in main.
    names = [m.name for m in pkgutil.walk_packages(lm_jax.__path__, "lm_jax.") if not m.name.startswith("lm_jax.cli.")]
    for name in names + ["lm_jax.cli.import_torch"]:
      importlib.import_module(name)
    from lm_jax import convert, errors
    try:
      convert.read_torch_checkpoint("model.pt")
    except errors.UserError as e:
      print(e)
    sys.path.insert(0, "tests")
    from conftest import tiny_config
    from lm_jax import generate, trained
    from lm_jax.train import train_and_evaluate
    with tempfile.TemporaryDirectory() as workdir:
      results = train_and_evaluate(tiny_config(epochs=1), workdir)
      run = trained.load(workdir)
      words = generate.generate(run.model, run.params, jax.random.PRNGKey(0), 5, 1.0)
    print("imported", len(names), "modules; test ppl", round(results["test_ppl"], 2), "; generated", words.size)
""")


def test_lm_jax_imports_trains_evaluates_and_generates_without_torch():
  done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "torch" not in done.stderr.lower(), done.stderr[-3000:]
  assert done.stdout.startswith("reading a PyTorch checkpoint needs torch; install it with"), done.stdout[-2000:]
  last = done.stdout.strip().splitlines()[-1]
  assert last.startswith("imported ") and last.endswith("generated 5"), done.stdout[-2000:]
