"""The whole-loop benchmark's arithmetic and report: which windows can be timed, ms/window and tokens/s per
run, lm_jax's speedup per (lm_jax, PyTorch) pair and its median, the target, the markdown and the plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from lm_jax.errors import UserError

from benchmarks.common import plots, report
from benchmarks.common.rounds import FRAMEWORKS, median_values

TARGET_SPEEDUP = 1.4


def whole_windows(train_tokens: int, batch: int, bptt: int) -> int:
  """Full-length windows in an epoch: batchify keeps train_tokens // batch rows, and the windows start every
  bptt rows, each reading bptt + 1 of them (its targets are its inputs shifted by one); the last is short."""
  return (train_tokens // batch - 1) // bptt


def timed_tokens(dataset: str, train_tokens: int, batch: int, bptt: int, warmup: int, windows: int) -> int:
  """Tokens in windows [warmup, warmup + windows) of the first epoch, which must all be full-length."""
  available = whole_windows(train_tokens, batch, bptt)
  if warmup + windows > available:
    raise UserError(f"{dataset}'s first epoch has {available} full windows of {bptt} at batch {batch}, fewer than "
                    f"--warmup + --windows = {warmup + windows}; lower --windows or --warmup")
  return windows * batch * bptt


def summarise(dataset: str, config: dict, train_tokens: int, windows: int, tokens: int,
              runs: dict[str, list[dict]]) -> dict:
  """One dataset and cell: each run's ms/window and tokens/s, medians over rounds, and lm_jax's speedup per
  round's (lm_jax, PyTorch) pair: PyTorch's time over lm_jax's for the same windows."""
  rated = {framework: [{**run, "ms_per_window": 1000 * run["timed_s"] / windows,
                        "tokens_per_s": tokens / run["timed_s"]} for run in framework_runs]
           for framework, framework_runs in runs.items()}
  ratios = [torch_run["timed_s"] / jax_run["timed_s"] for jax_run, torch_run in zip(runs["lm_jax"], runs["pytorch"])]
  return {"dataset": dataset, "cell": config["model"]["cell"], "config": config, "train_tokens": train_tokens,
          "windows": windows, "timed_tokens": tokens, "runs": rated,
          "median": {framework: median_values(framework_runs) for framework, framework_runs in rated.items()},
          "ratios": ratios, "median_ratio": statistics.median(ratios)}


def targets(configs: list[dict]) -> list[dict]:
  return [{"target": f"whole-loop tokens/s >= {TARGET_SPEEDUP:g}x PyTorch, {c['dataset']} {c['cell']}",
           "measured": f"{c['median_ratio']:.2f}x", "met": c["median_ratio"] >= TARGET_SPEEDUP} for c in configs]


def markdown(results: dict) -> str:
  configs, settings = results["configs"], results["settings"]
  config = configs[0]["config"]
  m = config["model"]
  lines = [
      f"# Whole training loop, lm_jax vs PyTorch: {results['machine']['name']}",
      "",
      *report.machine_lines(results, configs[0]["runs"]["pytorch"][0]["device"]),
      "",
      f"Settings (configs/default.py): {m['nlayers']}x{m['nhid']} {'tied' if m['tied'] else 'untied'}, embedding "
      f"{m['emsize']}, dropout {m['dropout']}, batch {config['batch_size']}, bptt {config['bptt']}, SGD lr "
      f"{config['optim']['lr']:g} after a global-norm clip of {config['optim']['clip']:g}, a log line every "
      f"{config['log_interval']} windows.",
      "",
      f"Each worker process trains epoch 1 from a fresh model and times windows {settings['warmup']} to "
      f"{settings['warmup'] + settings['windows'] - 1} ({settings['windows']} full windows) by wall clock, from the "
      "end of the window before them to the end of the last, the device's work included. Not timed, and reported "
      f"apart: the corpus load (read, tokenise, batchify all three splits onto the device) and the first "
      f"{settings['warmup']} windows (lm_jax compiles its step there). Each dataset ran {results['rounds']} round(s) "
      "of one lm_jax worker then one PyTorch worker; each speedup is PyTorch's time over lm_jax's within one "
      "round, the median is over rounds.",
      "",
      "- lm_jax: the trainer's own loop (`lm_jax.train.train_windows` over the timed windows, after "
      "`setup_run` and `start`): per window the jitted step slicing its window from the split on the device and "
      "the SIGTERM check; every log_interval windows the interval's loss and gradient norm read back (a host "
      "sync) and the log line. Nothing checkpointed.",
      "- PyTorch: main.py's train() with torch_reference's model: get_batch, repackage_hidden, zero_grad, forward, "
      "cross-entropy, backward, clip_grad_norm_, p -= lr * grad, `total_loss += loss.item()` (a host sync) every "
      "window, main.py's log line every log_interval windows.",
  ]
  if results["quick"]:
    lines += ["", "**Quick smoke test on a tiny corpus: these timings mean nothing.**"]
  lines += ["", *report.targets_lines(results["targets"])]
  lines += ["", "## Whole loop", "",
            "| dataset | cell | windows timed | ms/window lm_jax | ms/window PyTorch | tokens/s lm_jax "
            "| tokens/s PyTorch | log lines timed lm_jax / PyTorch | speedup per pair | median speedup |",
            "|---|---|" + "---:|" * 8]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    log_lines = " / ".join(",".join(str(run["log_lines"]) for run in c["runs"][f]) for f in FRAMEWORKS)
    lines.append(f"| {c['dataset']} | {c['cell']} | {c['windows']} | {jax_m['ms_per_window']:.2f} "
                 f"| {torch_m['ms_per_window']:.2f} | {jax_m['tokens_per_s']:,.0f} | {torch_m['tokens_per_s']:,.0f} "
                 f"| {log_lines} | {', '.join(f'{r:.2f}' for r in c['ratios'])} | {c['median_ratio']:.2f}x |")
  lines += ["", "## Not timed: the corpus load and the first windows", "",
            "| dataset | cell | training tokens | corpus load s lm_jax / PyTorch | first windows s lm_jax "
            "(compilation included) / PyTorch | peak RSS MiB lm_jax / PyTorch |",
            "|---|---|---:|---:|---:|---:|"]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    lines.append(f"| {c['dataset']} | {c['cell']} | {c['train_tokens']:,} | {jax_m['load_s']:.2f} / "
                 f"{torch_m['load_s']:.2f} | {jax_m['warmup_s']:.2f} / {torch_m['warmup_s']:.2f} "
                 f"| {jax_m['peak_rss_mib']:,.0f} / {torch_m['peak_rss_mib']:,.0f} |")
  return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
  """ms per window, lm_jax vs PyTorch per dataset, one panel per cell."""
  cells = dict.fromkeys(c["cell"] for c in results["configs"])
  panels = {cell: [(c["dataset"], {label: c["median"][framework]["ms_per_window"]
                                   for framework, label in FRAMEWORKS.items()}, c["median_ratio"])
                   for c in results["configs"] if c["cell"] == cell] for cell in cells}
  return plots.time_bars(panels, "ms per window, whole loop (lower is faster)",
                         f"whole training loop: {results['machine']['name']}", path)
