"""From the workers' results to pair-by-pair ratios, the speed targets, the markdown report and the plot."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from absl import logging

from benchmarks.breakdown import DERIVATION
from benchmarks.flops import FORMULA, train_step_flops
from benchmarks.shapes import Shape

FRAMEWORKS = {"lm_jax": "lm_jax", "pytorch": "PyTorch"}  # key -> label; workers run in this order
# ratio name -> the throughput it compares; every ratio is lm_jax's over PyTorch's, so > 1 means lm_jax is faster.
RATIOS = {"train": "train_tokens_per_s", "eval": "eval_tokens_per_s", "generate": "generate_words_per_s"}
COMPILE_LIMIT_S = 10.0
COMPILATION_COUNTS = ("compilations_after_first", "compilations_after_warmup", "compilations_at_end")


def summarise(shape: Shape, runs: dict[str, list[dict]]) -> dict:
  """One config: its runs per framework, medians over rounds, ratios per (lm_jax, PyTorch) pair."""
  breakdown = runs["lm_jax"][0].pop("breakdown")
  flops = train_step_flops(shape)
  medians = {framework: _medians(framework_runs) for framework, framework_runs in runs.items()}
  ratios = {name: [jax_run[key] / torch_run[key] for jax_run, torch_run in zip(runs["lm_jax"], runs["pytorch"])]
            for name, key in RATIOS.items()}
  return {
      "cell": shape.cell, "size": shape.size, "shape": dataclasses.asdict(shape), "train_step_flops": flops,
      "runs": runs, "median": medians, "ratios": ratios,
      "median_ratio": {name: statistics.median(values) for name, values in ratios.items()},
      "gflops_per_s": {framework: flops / (m["train_ms"] / 1000) / 1e9 for framework, m in medians.items()},
      "breakdown": breakdown,
  }


def _medians(runs: list[dict]) -> dict[str, float]:
  numeric = [key for key, value in runs[0].items() if isinstance(value, (int, float))]
  return {key: statistics.median(run[key] for run in runs) for key in numeric}


def targets(configs: list[dict]) -> list[dict]:
  """The issue's speed targets, each with what was measured and whether it was met (None: not measured)."""

  def ratio_target(name: str, ratio: str, threshold: float, sizes: tuple[str, ...] | None = None) -> dict:
    chosen = [c for c in configs if sizes is None or c["size"] in sizes]
    return {"target": name,
            "measured": ", ".join(f"{c['cell']} {c['size']} {c['median_ratio'][ratio]:.2f}x" for c in chosen),
            "met": all(c["median_ratio"][ratio] >= threshold for c in chosen) if chosen else None}

  lm_jax_runs = {f"{c['cell']} {c['size']}": c["runs"]["lm_jax"] for c in configs}
  return [
      ratio_target("train tokens/s >= 1.5x PyTorch, every cell at 2x200", "train", 1.5, ("small",)),
      ratio_target("train tokens/s >= 1.2x PyTorch, every cell at 2x650", "train", 1.2, ("medium",)),
      ratio_target("evaluation tokens/s >= 1.5x PyTorch", "eval", 1.5),
      ratio_target("generation words/s >= 5x PyTorch", "generate", 5.0),
      {"target": f"train-step compile time <= {COMPILE_LIMIT_S:g} s per config (worst round)",
       "measured": ", ".join(f"{name} {max(r['compile_s'] for r in runs):.2f} s" for name, runs in lm_jax_runs.items()),
       "met": all(r["compile_s"] <= COMPILE_LIMIT_S for runs in lm_jax_runs.values() for r in runs)},
      {"target": "no recompilation after the first step (compiled programs after first step / warm-up / end)",
       "measured": ", ".join(f"{name} {' '.join(map(_compilations, runs))}" for name, runs in lm_jax_runs.items()),
       "met": all(len({r[count] for count in COMPILATION_COUNTS}) == 1 for runs in lm_jax_runs.values() for r in runs)},
  ]


def markdown(results: dict) -> str:
  machine, configs = results["machine"], results["configs"]
  versions = " · ".join(f"{name} {version}" for name, version in machine["versions"].items())
  torch_device = configs[0]["runs"]["pytorch"][0]["device"]
  lines = [
      f"# lm_jax vs PyTorch: {machine['name']}",
      "",
      f"{results['date']} · JAX device {machine['device_kind']} ({machine['platform']}) · PyTorch device "
      f"{torch_device} · CPU {machine['cpu']} x {machine['cpu_count']}",
      "",
      versions,
      "",
      f"fp32 matmul ceiling ({machine['matmul_n']}² @ {machine['matmul_n']}², best of 5): jax "
      f"{machine['jax_matmul_gflops']:.1f} GFLOP/s, numpy {machine['numpy_matmul_gflops']:.1f} GFLOP/s.",
      "",
      f"Each config ran {results['rounds']} round(s) of one lm_jax worker process then one PyTorch worker process; "
      "every ratio is lm_jax's throughput over PyTorch's within one round, and the median is over rounds. "
      "Times are medians of calls after warm-up; compile time is the first call minus that median.",
  ]
  if results["quick"]:
    lines += ["", "**Quick smoke-test shapes: these timings mean nothing.**"]
  lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
  lines += [f"| {t['target']} | {t['measured'] or '-'} | {_verdict(t['met'])} |" for t in results["targets"]]

  lines += ["", "## Training step (clip 0.25 + SGD lr 20)", "",
            "| cell | size | model | ms/step lm_jax | ms/step PyTorch | tokens/s lm_jax | tokens/s PyTorch "
            "| speedup per pair | median speedup | GFLOP/step | GFLOP/s lm_jax | GFLOP/s PyTorch "
            "| lm_jax % of jax matmul ceiling |",
            "|---|---|---|" + "---:|" * 10]
  for c in configs:
    s, jax_m, torch_m, gflops = c["shape"], c["median"]["lm_jax"], c["median"]["pytorch"], c["gflops_per_s"]
    lines.append(
        f"| {c['cell']} | {c['size']} | {s['nlayers']}x{s['nhid']} {'tied' if s['tied'] else 'untied'}, "
        f"V {s['vocab']:,}, B {s['batch']}, T {s['bptt']} | {jax_m['train_ms']:.2f} | {torch_m['train_ms']:.2f} "
        f"| {jax_m['train_tokens_per_s']:,.0f} | {torch_m['train_tokens_per_s']:,.0f} | {_ratios(c, 'train')} "
        f"| {c['median_ratio']['train']:.2f}x | {c['train_step_flops'] / 1e9:.3f} | {gflops['lm_jax']:.1f} "
        f"| {gflops['pytorch']:.1f} | {100 * gflops['lm_jax'] / machine['jax_matmul_gflops']:.0f}% |")
  lines += ["", f"FLOPs per train step: {FORMULA}."]

  lines += ["", "## Evaluation (whole windows) and generation (one word at a time)", "",
            "| cell | size | eval tokens/s lm_jax | eval tokens/s PyTorch | speedup per pair | median "
            "| words/s lm_jax | words/s PyTorch | speedup per pair | median |",
            "|---|---|" + "---:|" * 8]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    lines.append(
        f"| {c['cell']} | {c['size']} | {jax_m['eval_tokens_per_s']:,.0f} | {torch_m['eval_tokens_per_s']:,.0f} "
        f"| {_ratios(c, 'eval')} | {c['median_ratio']['eval']:.2f}x | {jax_m['generate_words_per_s']:,.0f} "
        f"| {torch_m['generate_words_per_s']:,.0f} | {_ratios(c, 'generate')} | {c['median_ratio']['generate']:.2f}x |")

  lines += ["", "## Compilation and memory", "",
            "| cell | size | lm_jax compile s: train / eval / generate | PyTorch first-call overhead s: train "
            "| compiled train programs after first step / warm-up / end | peak RSS MiB lm_jax / PyTorch "
            "| device peak MiB lm_jax / PyTorch |",
            "|---|---|---:|---:|---:|---:|---:|"]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    counts = " ".join(map(_compilations, c["runs"]["lm_jax"]))
    lines.append(
        f"| {c['cell']} | {c['size']} | {jax_m['compile_s']:.2f} / {jax_m['eval_compile_s']:.2f} / "
        f"{jax_m['generate_compile_s']:.2f} | {torch_m['compile_s']:.3f} | {counts} "
        f"| {jax_m['peak_rss_mib']:,.0f} / {torch_m['peak_rss_mib']:,.0f} "
        f"| {_mib(jax_m.get('device_peak_mib'))} / {_mib(torch_m.get('device_peak_mib'))} |")

  parts = list(configs[0]["breakdown"]["percent"])  # the same model depth in every config
  lines += ["", "## Where an lm_jax train step goes (% of the step, first round)", "",
            "| cell | size | step ms | " + " | ".join(parts) + " |",
            "|---|---|" + "---:|" * (1 + len(parts))]
  for c in configs:
    percent = c["breakdown"]["percent"]
    lines.append(f"| {c['cell']} | {c['size']} | {c['breakdown']['step_ms']:.2f} | "
                 + " | ".join(f"{percent[part]:.0f}%" for part in parts) + " |")
  layers = list(configs[0]["breakdown"]["per_time_step_ms"])
  lines += ["", "Recurrent layers, ms per time step:", "",
            "| cell | size | " + " | ".join(layers) + " |", "|---|---|" + "---:|" * len(layers)]
  for c in configs:
    per_step = c["breakdown"]["per_time_step_ms"]
    lines.append(f"| {c['cell']} | {c['size']} | " + " | ".join(f"{per_step[part]:.3f}" for part in layers) + " |")
  lines += [
      "",
      f"Derived from controlled ablations. {DERIVATION}",
  ]
  return "\n".join(lines) + "\n"


def _compilations(run: dict) -> str:
  return "/".join(str(run[count]) for count in COMPILATION_COUNTS)


def _ratios(config: dict, name: str) -> str:
  return ", ".join(f"{r:.2f}" for r in config["ratios"][name])


def _mib(value: float | None) -> str:
  return "-" if value is None else f"{value:,.0f}"


def _verdict(met: bool | None) -> str:
  return {True: "met", False: "**not met**", None: "not measured"}[met]


def plot(results: dict, path: Path) -> bool:
  """Grouped bars of ms per train step, lm_jax vs PyTorch per cell, one panel per size."""
  try:
    import matplotlib
  except ImportError:
    logging.warning("matplotlib is not installed, so no plot; `pip install matplotlib` to get %s", path.name)
    return False
  matplotlib.use("Agg")  # files only, no display needed
  from matplotlib import pyplot as plt

  sizes = list(dict.fromkeys(c["size"] for c in results["configs"]))
  figure, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
  width = 0.4
  for axis, size in zip(axes[0], sizes):
    configs = [c for c in results["configs"] if c["size"] == size]
    for i, (framework, label) in enumerate(FRAMEWORKS.items()):
      positions = [k + (i - 0.5) * width for k in range(len(configs))]
      axis.bar(positions, [c["median"][framework]["train_ms"] for c in configs], width, label=label)
    for k, c in enumerate(configs):  # lm_jax's median speedup over each pair of bars
      top = max(c["median"][framework]["train_ms"] for framework in FRAMEWORKS)
      axis.annotate(f"{c['median_ratio']['train']:.2f}x", (k, top), ha="center", va="bottom")
    axis.set_xticks(range(len(configs)), [c["cell"] for c in configs])
    axis.set_title(size)
    axis.margins(y=0.15)  # room for the speedup labels
    axis.set_ylabel("ms per train step (lower is faster)")
  axes[0][0].legend(loc="lower left")  # below the speedup labels
  figure.suptitle(results["machine"]["name"])
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return True
