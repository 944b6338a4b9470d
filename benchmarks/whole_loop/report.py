"""The whole-loop benchmark's arithmetic and report: which windows can be timed, ms/window and tokens/s per
run, lm_jax's speedup per (lm_jax, PyTorch) pair and its median, the targets, the markdown and the plot. Rows are
of two models: `word_language_model` (configs/default.py against PyTorch's word_language_model) and `awd`
(configs/awd_ptb.py against salesforce/awd-lstm-lm)."""

from __future__ import annotations

import statistics
from pathlib import Path

from lm_jax.config import from_saved
from lm_jax.data.batching import VARIABLE_BPTT_MARGIN
from lm_jax.errors import UserError

from benchmarks.common import plots, report
from benchmarks.common.rounds import FRAMEWORKS, median_values

# word_language_model rows: issue #24's targets per corpus, 1.4x for any other
TARGET_SPEEDUP = {"ptb": 1.3, "wikitext-2": 1.43}
DEFAULT_TARGET_SPEEDUP = 1.4
AWD_TARGET_SPEEDUP = 1.0  # awd rows


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


def variable_windows_at_least(train_tokens: int, batch: int, bptt: int) -> int:
  """Windows an epoch of variable BPTT surely holds: lm_jax's advance at most bptt + VARIABLE_BPTT_MARGIN rows
  each over the batchified rows (awd-lstm-lm's main.py draws longer ones with probability ~3e-5 each)."""
  return (train_tokens // batch - 1) // (bptt + VARIABLE_BPTT_MARGIN)


def require_variable_windows(dataset: str, train_tokens: int, batch: int, bptt: int, warmup: int,
                             windows: int) -> None:
  """Windows [warmup, warmup + windows) of the first epoch must exist on both sides."""
  available = variable_windows_at_least(train_tokens, batch, bptt)
  if warmup + windows > available:
    raise UserError(f"{dataset}'s first epoch surely holds only {available} windows of variable length around {bptt} "
                    f"at batch {batch}, fewer than --warmup + --windows = {warmup + windows}; lower --windows or "
                    "--warmup")


def summarise(model: str, dataset: str, config: dict, train_tokens: int, settings: dict,
              runs: dict[str, list[dict]]) -> dict:
  """One model, dataset and cell: each run's ms/window and tokens/s (its own timed tokens: the two sides' windows
  differ in length under variable BPTT), medians over rounds, and lm_jax's speedup per round's (lm_jax, PyTorch)
  pair: lm_jax's tokens/s over PyTorch's (for the same windows: PyTorch's time over lm_jax's)."""
  windows = settings["windows"]
  rated = {framework: [{**run, "ms_per_window": 1000 * run["timed_s"] / windows,
                        "tokens_per_s": run["timed_tokens"] / run["timed_s"]} for run in framework_runs]
           for framework, framework_runs in runs.items()}
  ratios = [jax_run["tokens_per_s"] / torch_run["tokens_per_s"]
            for jax_run, torch_run in zip(rated["lm_jax"], rated["pytorch"])]
  return {"model": model, "dataset": dataset, "cell": config["model"]["cell"],
          "dtype": config["model"]["matmul_dtype"], "config": config,
          "train_tokens": train_tokens, "settings": settings, "windows": windows, "runs": rated,
          "median": {framework: median_values(framework_runs) for framework, framework_runs in rated.items()},
          "ratios": ratios, "median_ratio": statistics.median(ratios)}


def targets(configs: list[dict]) -> list[dict]:
  """Issue #24's targets are float32's; a bfloat16 row is stated in its table only."""
  return [_target(c) for c in configs if c["dtype"] == "float32"]


def _target(c: dict) -> dict:
  if c["model"] == "awd":
    speedup = AWD_TARGET_SPEEDUP
    text = f"AWD-LSTM whole loop at least {speedup:.1f}x awd-lstm-lm's tokens/s, {c['dataset']}"
  else:
    speedup = TARGET_SPEEDUP.get(c["dataset"], DEFAULT_TARGET_SPEEDUP)
    text = f"whole-loop tokens/s >= {speedup:g}x PyTorch, {c['dataset']} {c['cell']}"
  return {"target": text, "measured": f"{c['median_ratio']:.2f}x", "met": c["median_ratio"] >= speedup}


def label(model: str, model_config: dict) -> str:
  """A row's model in the report and the progress lines: the cell, or AWD-LSTM; and its matmul dtype."""
  return f"{'AWD-LSTM' if model == 'awd' else model_config['cell']} {model_config['matmul_dtype']}"


def markdown(results: dict) -> str:
  configs = results["configs"]
  language_model = [c for c in configs if c["model"] == "word_language_model"]
  awd = [c for c in configs if c["model"] == "awd"]
  lines = [f"# Whole training loop, lm_jax vs PyTorch: {results['machine']['name']}", "",
           *report.machine_lines(results, configs[0]["runs"]["pytorch"][0]["device"])]
  if language_model:
    lines += ["", *_language_model_method(language_model[0])]
  if awd:
    lines += ["", *_awd_method(awd[0])]
  if any(c["dtype"] != "float32" for c in configs):
    lines += ["", "A bfloat16 row: lm_jax with config.model.matmul_dtype=bfloat16 (matmul inputs in bfloat16, "
              "parameters, accumulation and optimiser in float32), PyTorch with the forward and the loss under "
              "torch.autocast(dtype=bfloat16), the backward and the optimiser outside it. Issue #24's targets are "
              "float32's; a bfloat16 row is stated beside them."]
  if results["quick"]:
    lines += ["", "**Quick smoke test on a tiny corpus: these timings mean nothing.**"]
  lines += ["", *report.targets_lines(results["targets"])]
  if language_model:
    lines += ["", "## Whole loop", "", *_language_model_table(language_model)]
  if awd:
    lines += ["", "## AWD-LSTM whole loop", "", *_awd_table(awd)]
  lines += ["", "## Not timed: the corpus load and the first windows", "",
            "| dataset | model, matmul dtype | training tokens | corpus load s lm_jax / PyTorch | first windows s lm_jax "
            "(compilation included) / PyTorch | peak RSS MiB lm_jax / PyTorch |",
            "|---|---|---:|---:|---:|---:|"]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    lines.append(f"| {c['dataset']} | {label(c['model'], c['config']['model'])} | {c['train_tokens']:,} "
                 f"| {jax_m['load_s']:.2f} / "
                 f"{torch_m['load_s']:.2f} | {jax_m['warmup_s']:.2f} / {torch_m['warmup_s']:.2f} "
                 f"| {jax_m['peak_rss_mib']:,.0f} / {torch_m['peak_rss_mib']:,.0f} |")
  return "\n".join(lines) + "\n"


def _language_model_method(c: dict) -> list[str]:
  config, settings = c["config"], c["settings"]
  m = config["model"]
  return [
      f"Settings (configs/default.py): {m['nlayers']}x{m['nhid']} {'tied' if m['tied'] else 'untied'}, embedding "
      f"{m['emsize']}, dropout {m['dropout']}, batch {config['batch_size']}, bptt {config['bptt']}, SGD lr "
      f"{config['optim']['lr']:g} after a global-norm clip of {config['optim']['clip']:g}, a log line every "
      f"{config['log_interval']} windows.",
      "",
      f"Each worker process trains epoch 1 from a fresh model and times windows {settings['warmup']} to "
      f"{settings['warmup'] + settings['windows'] - 1} ({settings['windows']} full windows) by wall clock, from the "
      "end of the window before them to the end of the last, the device's work included. Not timed, and reported "
      f"apart: the corpus load (read, tokenise, batchify all three splits onto the device) and the first "
      f"{settings['warmup']} windows (lm_jax compiles its step there). Each dataset ran {settings['rounds']} round(s) "
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


def _awd_method(c: dict) -> list[str]:
  config, settings = c["config"], c["settings"]
  m, o, bptt = config["model"], config["optim"], config["bptt"]
  sizes = [m["nhid"]] * (m["nlayers"] - 1) + [m["emsize"] if m["tied"] else m["nhid"]]
  return [
      f"AWD-LSTM settings (configs/awd_ptb.py: salesforce/awd-lstm-lm's main.py with its README's PTB flags): "
      f"{m['nlayers']} layers {'/'.join(map(str, sizes))} {'tied' if m['tied'] else 'untied'}, embedding "
      f"{m['emsize']}, dropout {m['dropout']}, dropouth {m['dropouth']}, dropouti {m['dropouti']}, dropoute "
      f"{m['dropoute']}, wdrop {m['wdrop']}, AR {config['ar_alpha']:g}, TAR {config['tar_beta']:g}, batch "
      f"{config['batch_size']}, variable BPTT around {bptt}, SGD lr {o['lr']:g} with weight decay "
      f"{o['weight_decay']:g} after a global-norm clip of {o['clip']:g} (epoch 1 ends before NT-ASGD can switch), "
      f"a log line every {config['log_interval']} windows. A vocabulary under 75,000 words leaves main.py's "
      "SplitCrossEntropyLoss without splits: both sides compute the full softmax.",
      "",
      f"Each worker process trains epoch 1 from a fresh model and times windows {settings['warmup']} to "
      f"{settings['warmup'] + settings['windows'] - 1} ({settings['windows']} windows) by wall clock, from the end "
      "of the window before them to the end of the last, the device's work included; the corpus load and the "
      f"first {settings['warmup']} windows are reported apart. Each side draws its windows' lengths as its own "
      f"code does ({bptt} with probability 0.95, else {bptt / 2:g}; then max(5, int(N(that, 5))) steps; the lr "
      "scaled by the length over bptt for the window): main.py from numpy seeded with the seed, lm_jax from its "
      "own generator of the seed and the epoch, cutting a window at "
      f"{bptt} + {VARIABLE_BPTT_MARGIN} steps and running it at its length rounded up to a multiple of "
      f"{from_saved(config).bptt_bucket} (one compiled program per such length, the steps past its length masked). The "
      "programs the timed windows need beyond the warm-up's are compiled before the clock starts (a step on a copy "
      "of the state each; the JSON's `compile_ahead_s`), as every epoch after a run's first finds them compiled. "
      "The two sides time different windows, so "
      "each speedup is lm_jax's tokens/s over PyTorch's within one round (tokens: each timed window's length x "
      f"batch); the median is over rounds. Each dataset ran {settings['rounds']} round(s) of one lm_jax worker then "
      "one PyTorch worker.",
      "",
      "- lm_jax: the same trainer loop (`lm_jax.train.train_windows` after `setup_run` and `start`) over "
      "`lm_run.epoch_windows`' windows: per window the jitted step, drawing its embedding, locked and weight-drop "
      "masks on the device, with AR and TAR, the clip and SGD with weight decay at the window's lr scale; every "
      "log_interval windows the host sync and the log line. Nothing checkpointed.",
      "- PyTorch: awd-lstm-lm main.py's train() with torch_reference/awd_lstm.py's model: per window the length "
      "drawn, the lr scaled, get_batch, fresh masks (embedding per word type, locked per column, DropConnect on "
      "each W_hh through a functional call), repackage_hidden, zero_grad, forward, cross-entropy + AR + TAR, "
      "backward, clip_grad_norm_, SGD with weight decay, the lr restored, `total_loss += raw_loss.data` (no host "
      "sync but the log line's `.item()`), main.py's log line every log_interval windows.",
  ]


def _language_model_table(configs: list[dict]) -> list[str]:
  lines = ["| dataset | cell | matmul dtype | windows timed | ms/window lm_jax | ms/window PyTorch | tokens/s lm_jax "
           "| tokens/s PyTorch | log lines timed lm_jax / PyTorch | speedup per pair | median speedup |",
           "|---|---|---|" + "---:|" * 8]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    lines.append(f"| {c['dataset']} | {c['cell']} | {c['dtype']} | {c['windows']} | {jax_m['ms_per_window']:.2f} "
                 f"| {torch_m['ms_per_window']:.2f} | {jax_m['tokens_per_s']:,.0f} | {torch_m['tokens_per_s']:,.0f} "
                 f"| {_log_lines(c)} | {_ratios(c)} | {c['median_ratio']:.2f}x |")
  return lines


def _awd_table(configs: list[dict]) -> list[str]:
  lines = ["| dataset | matmul dtype | windows timed | mean steps per window lm_jax / PyTorch | ms/window lm_jax "
           "| ms/window PyTorch | tokens/s lm_jax | tokens/s PyTorch | log lines timed lm_jax / PyTorch "
           "| speedup per pair (tokens/s) | median speedup |",
           "|---|---|" + "---:|" * 9]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    steps = " / ".join(f"{mean_steps(c, f):.1f}" for f in FRAMEWORKS)
    lines.append(f"| {c['dataset']} | {c['dtype']} | {c['windows']} | {steps} | {jax_m['ms_per_window']:.2f} "
                 f"| {torch_m['ms_per_window']:.2f} | {jax_m['tokens_per_s']:,.0f} | {torch_m['tokens_per_s']:,.0f} "
                 f"| {_log_lines(c)} | {_ratios(c)} | {c['median_ratio']:.2f}x |")
  return lines


def mean_steps(c: dict, framework: str) -> float:
  """The mean length of a framework's timed windows (its median over rounds of timed tokens / windows / batch)."""
  return c["median"][framework]["timed_tokens"] / (c["windows"] * c["config"]["batch_size"])


def _log_lines(c: dict) -> str:
  return " / ".join(",".join(str(run["log_lines"]) for run in c["runs"][f]) for f in FRAMEWORKS)


def _ratios(c: dict) -> str:
  return ", ".join(f"{r:.2f}" for r in c["ratios"])


def plot(results: dict, path: Path) -> bool:
  """ms per window, lm_jax vs PyTorch per dataset, one panel per cell; AWD-LSTM's panel at each side's tokens/s
  as ms per window of batch x bptt tokens (its windows vary in length)."""
  panels: dict[str, list[plots.Bars]] = {}
  for c in results["configs"]:
    if c["model"] == "awd":
      full_window = c["config"]["batch_size"] * c["config"]["bptt"]
      panel = f"AWD-LSTM {c['dtype']} (per window of {c['config']['batch_size']} x {c['config']['bptt']} tokens)"
      times = {name: 1000 * full_window / c["median"][f]["tokens_per_s"] for f, name in FRAMEWORKS.items()}
    else:
      panel = f"{c['cell']} {c['dtype']}"
      times = {name: c["median"][f]["ms_per_window"] for f, name in FRAMEWORKS.items()}
    panels.setdefault(panel, []).append((c["dataset"], times, c["median_ratio"]))
  return plots.time_bars(panels, "ms per window, whole loop (lower is faster)",
                         f"whole training loop: {results['machine']['name']}", path)
