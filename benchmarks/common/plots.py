"""The benchmarks' one kind of plot: lm_jax's and PyTorch's time side by side per config, lm_jax's speedup
above each pair, one panel per group."""

from __future__ import annotations

from pathlib import Path

from absl import logging

Bars = tuple[str, dict[str, float], float]  # (config label, time per framework label, lm_jax's speedup)


def time_bars(panels: dict[str, list[Bars]], ylabel: str, title: str, path: Path) -> bool:
  """Writes the figure to `path`; False (with a warning) when matplotlib is not installed."""
  try:
    import matplotlib
  except ImportError:
    logging.warning("matplotlib is not installed, so no plot; `pip install matplotlib` to get %s", path.name)
    return False
  matplotlib.use("Agg")  # files only, no display needed
  from matplotlib import pyplot as plt

  figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
  width = 0.4
  for axis, (panel, bars) in zip(axes[0], panels.items()):
    frameworks = list(bars[0][1])
    for i, framework in enumerate(frameworks):
      positions = [k + (i - (len(frameworks) - 1) / 2) * width for k in range(len(bars))]
      axis.bar(positions, [times[framework] for _, times, _ in bars], width, label=framework)
    for k, (_, times, speedup) in enumerate(bars):  # lm_jax's speedup over each pair of bars
      axis.annotate(f"{speedup:.2f}x", (k, max(times.values())), ha="center", va="bottom")
    axis.set_xticks(range(len(bars)), [label for label, _, _ in bars])
    axis.set_title(panel)
    axis.margins(y=0.15)  # room for the speedup labels
    axis.set_ylabel(ylabel)
  axes[0][0].legend(loc="lower left")  # below the speedup labels
  figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return True
