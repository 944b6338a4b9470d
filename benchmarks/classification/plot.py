"""The classification report's figure: test accuracy per dataset, a bar per model with the published figures of its
method marked over it (and the synthetic corpus's Bayes accuracy), and Kim's CNN's examples/s, lm_jax beside
PyTorch for training and prediction with lm_jax's speedup."""

from __future__ import annotations

from pathlib import Path

from absl import logging

from benchmarks.classification.published import published_marks
from benchmarks.common.rounds import FRAMEWORKS


def plot(results: dict, path: Path) -> bool:
  """Writes the figure to `path` (a panel for each part measured); False when there is nothing to plot, or (with a
  warning) when matplotlib is not installed."""
  try:
    import matplotlib
  except ImportError:
    logging.warning("matplotlib is not installed, so no plot; `pip install matplotlib` to get %s", path.name)
    return False
  matplotlib.use("Agg")  # files only, no display needed
  from matplotlib import pyplot as plt

  panels = []  # (relative width, drawing)
  if results["rows"]:
    panels.append((3, lambda axis: accuracy_panel(axis, results["rows"])))
  if results["speed"]:
    panels.append((1, lambda axis: speed_panel(axis, results["speed"])))
  if not panels:
    return False
  figure, axes = plt.subplots(1, len(panels), figsize=(5 * sum(w for w, _ in panels), 4.5), squeeze=False,
                              gridspec_kw={"width_ratios": [w for w, _ in panels]})
  for axis, (_, draw) in zip(axes[0], panels):
    draw(axis)
  figure.suptitle(f"text classification: {results['machine']['name']}" + (" (quick: meaningless)" if results["quick"]
                                                                            else ""))
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return True


def accuracy_panel(axis, rows: list[dict]) -> None:
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  models = list(dict.fromkeys(r["model"] for r in rows))
  width = 0.8 / len(models)
  for i, model in enumerate(models):
    for k, dataset in enumerate(datasets):
      row = next((r for r in rows if (r["model"], r["dataset"]) == (model, dataset)), None)
      if row is None:
        continue
      x = k + (i - (len(models) - 1) / 2) * width
      axis.bar(x, 100 * row["accuracy"], width, color=f"C{i}", label=model if k == 0 else None,
               yerr=100 * row["accuracy_std"] if row["accuracy_std"] else None)
      marks = [value for _, value in published_marks(model, dataset)]
      if row.get("bayes_accuracy") is not None:
        marks.append(100 * row["bayes_accuracy"])
      for value in marks:
        axis.plot([x - width / 2, x + width / 2], [value, value], color="black", linewidth=2)
  axis.plot([], [], color="black", linewidth=2, label="published (or Bayes accuracy)")
  axis.set_xticks(range(len(datasets)), datasets)
  axis.set_ylabel("test accuracy %")
  axis.set_ylim(0, 100)
  axis.legend(loc="lower left", fontsize=8)
  axis.set_title("accuracy per dataset and model")


def speed_panel(axis, speed: dict) -> None:
  parts = ("train", "predict")
  width = 0.4
  for i, (framework, label) in enumerate(FRAMEWORKS.items()):
    values = [speed["median"][framework][f"{part}_examples_per_s"] for part in parts]
    axis.bar([k + (i - 0.5) * width for k in range(len(parts))], values, width, label=label, color=f"C{i + 5}")
  for k, part in enumerate(parts):
    top = max(speed["median"][f][f"{part}_examples_per_s"] for f in FRAMEWORKS)
    axis.annotate(f"{speed['median_ratio'][part]:.2f}x", (k, top), ha="center", va="bottom")
  axis.set_xticks(range(len(parts)), ["training", "prediction"])
  axis.margins(y=0.15)
  axis.set_ylabel("examples/s")
  axis.legend(loc="upper left", fontsize=8)
  axis.set_title("Kim's CNN, lm_jax vs PyTorch")
