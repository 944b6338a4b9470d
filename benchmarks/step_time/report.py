"""The step-time report's markdown and plot, from the results step_time gathers (figures from summary.py)."""

from __future__ import annotations

from pathlib import Path

from lm_jax.profile import DERIVATION

from benchmarks.common import plots
from benchmarks.common.report import machine_lines, targets_lines
from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.step_time.flops import FORMULA
from benchmarks.step_time.measure import generate_key
from benchmarks.step_time.roofline import FORMULA as ROOFLINE_FORMULA
from benchmarks.step_time.shapes import TRANSFORMER
from benchmarks.step_time.summary import compilations

MATMUL_CEILING = {"float32": "jax_matmul_gflops", "bfloat16": "jax_bf16_matmul_gflops"}  # dtype -> machine key
DTYPE_LABELS = {"float32": "f32", "bfloat16": "bf16"}
# How the workers ran, unless the results say otherwise (a GPU run measuring a group of configs per process).
FRESH_WORKERS = "one lm_jax worker process then one PyTorch worker process"


def markdown(results: dict) -> str:
  machine, configs = results["machine"], results["configs"]
  lines = [
      f"# lm_jax vs PyTorch: {machine['name']}",
      "",
      *machine_lines(results, configs[0]["runs"]["pytorch"][0]["device"]),
      "",
      f"Dtypes measured: {', '.join(_dtypes(configs))} ({results['dtypes_reason']}). Each config ran "
      f"{results['rounds']} round(s) of {results.get('workers', FRESH_WORKERS)}, both in the config's dtype "
      "(lm_jax's config.model.matmul_dtype, PyTorch's torch.autocast); every ratio is "
      "lm_jax's throughput over PyTorch's within one round, and the median is over rounds. Times are medians of "
      "calls after warm-up; compile time is the first call minus that median.",
  ]
  if results["quick"]:
    lines += ["", "**Quick smoke-test shapes: these timings mean nothing.**"]
  lines += ["", *targets_lines(results["targets"])]

  lines += ["", "## Training step (clip 0.25 + SGD lr 20)", "",
            "| model | size | vocab | dtype | shape | ms/step lm_jax | ms/step PyTorch | tokens/s lm_jax "
            "| tokens/s PyTorch | speedup per pair | median speedup | GFLOP/step | GFLOP/s lm_jax | GFLOP/s PyTorch "
            "| lm_jax % of jax matmul ceiling (its dtype) |",
            "|---|---|---:|---|---|" + "---:|" * 10]
  for c in configs:
    jax_m, torch_m, gflops = c["median"]["lm_jax"], c["median"]["pytorch"], c["gflops_per_s"]
    lines.append(
        f"| {_key_columns(c)} | {_describe(c['shape'])} | {jax_m['train_ms']:.2f} | {torch_m['train_ms']:.2f} "
        f"| {jax_m['train_tokens_per_s']:,.0f} | {torch_m['train_tokens_per_s']:,.0f} | {_ratios(c, 'train')} "
        f"| {c['median_ratio']['train']:.2f}x | {c['train_step_flops'] / 1e9:.3f} | {gflops['lm_jax']:.1f} "
        f"| {gflops['pytorch']:.1f} | {100 * gflops['lm_jax'] / machine[MATMUL_CEILING[c['dtype']]]:.0f}% |")
  lines += ["", f"FLOPs per train step: {FORMULA}."]

  lines += ["", "## bfloat16 against float32 (train ms per step; speedup = float32 ms / bfloat16 ms)", ""]
  if results["dtype_speedups"]:
    lines += ["| model | size | vocab | lm_jax float32 | lm_jax bfloat16 | lm_jax speedup | PyTorch float32 "
              "| PyTorch bfloat16 | PyTorch speedup |", "|---|---|---:|" + "---:|" * 6]
    for row in results["dtype_speedups"]:
      lines.append(f"| {row['model']} | {row['size']} | {row['vocab']:,} | " + " | ".join(
          f"{row[f]['float32_ms']:.2f} | {row[f]['bfloat16_ms']:.2f} | {row[f]['bfloat16_speedup']:.2f}x"
          for f in FRAMEWORKS) + " |")
  else:
    lines.append("Not measured: pass --dtypes=float32,bfloat16.")

  lines += ["", "## Evaluation (whole windows)", "",
            "| model | size | vocab | dtype | tokens/s lm_jax | tokens/s PyTorch | speedup per pair | median |",
            "|---|---|---:|---|" + "---:|" * 4]
  for c in configs:
    lines.append(f"| {_key_columns(c)} | {c['median']['lm_jax']['eval_tokens_per_s']:,.0f} "
                 f"| {c['median']['pytorch']['eval_tokens_per_s']:,.0f} | {_ratios(c, 'eval')} "
                 f"| {c['median_ratio']['eval']:.2f}x |")

  batched = configs[0]["generation"]["batched_samples"]
  lines += ["", f"## Generation (N samples at once, {configs[0]['shape']['gen_words']} words each)", "",
            f"| model | size | vocab | dtype | MB read per word | roofline words/s | lm_jax N=1 words/s | roofline / "
            f"N=1 | lm_jax N={batched} words/s | N={batched} / N=1 | MFLOP per word | N={batched} GFLOP/s (% of "
            f"ceiling) | N={batched} / N=1 at the ceiling | PyTorch N=1 words/s | lm_jax / PyTorch N=1 per pair "
            "| median |",
            "|---|---|---:|---|" + "---:|" * 12]
  for c in configs:
    g, jax_m, ceiling = c["generation"], c["median"]["lm_jax"], machine[MATMUL_CEILING[c["dtype"]]]
    single, many = jax_m[generate_key(1)], jax_m[generate_key(batched)]
    gflops = many * g["flops_per_word"] / 1e9
    lines.append(
        f"| {_key_columns(c)} | {g['bytes_per_word'] / 1e6:.2f} | {g['roofline_words_per_s']:,.0f} "
        f"| {single:,.0f} | {g['roofline_over_single']:.2f}x | {many:,.0f} | {g['median_batched_over_single']:.1f}x "
        f"| {g['flops_per_word'] / 1e6:.2f} | {gflops:.1f} ({100 * gflops / ceiling:.0f}%) "
        f"| {ceiling * 1e9 / g['flops_per_word'] / single:.1f}x | {c['median']['pytorch'][generate_key(1)]:,.0f} "
        f"| {_ratios(c, 'generate')} | {c['median_ratio']['generate']:.2f}x |")
  lines += ["", "lm_jax generates the N samples in one compiled loop (the transformer with its key/value cache); "
            "PyTorch runs the reference's generate.py loop, one sample, each word read back to the host (the "
            "transformer re-feeding the whole sequence). The " + ROOFLINE_FORMULA + ". MFLOP per word: the "
            f"forward matmuls of one row (`generated_word_flops`); N={batched} / N=1 at the ceiling = the "
            f"matmul ceiling of the dtype / MFLOP per word / N=1 words/s, the most that N={batched} can gain when "
            "its products run at the ceiling and nothing else takes time."]

  forward = [c for c in configs if "recurrence_forward" in c["median_ratio"]]
  if forward:
    lines += ["", "## Recurrence forward (embedding + recurrent layers, train batch x bptt, from a zero state)", "",
              "| model | size | vocab | dtype | ms lm_jax | ms torch.nn.LSTM/GRU/RNN | speedup per pair | median |",
              "|---|---|---:|---|" + "---:|" * 4]
    for c in forward:
      ms = {f: 1000 * c["shape"]["batch"] * c["shape"]["bptt"] / c["median"][f]["recurrence_forward_tokens_per_s"]
            for f in FRAMEWORKS}
      lines.append(f"| {_key_columns(c)} | {ms['lm_jax']:.2f} | {ms['pytorch']:.2f} | "
                   f"{_ratios(c, 'recurrence_forward')} | {c['median_ratio']['recurrence_forward']:.2f}x |")

  lines += ["", "## Compilation and memory", "",
            f"| model | size | vocab | dtype | lm_jax compile s: train / eval / generate N=1 / N={batched} "
            "| PyTorch first-call overhead s: train | compiled train programs after first step / warm-up / end "
            "| peak RSS MiB lm_jax / PyTorch | device peak MiB lm_jax / PyTorch |",
            "|---|---|---:|---|" + "---:|" * 5]
  for c in configs:
    jax_m, torch_m = c["median"]["lm_jax"], c["median"]["pytorch"]
    compile_s = [jax_m["compile_s"], jax_m["eval_compile_s"]] + [
        jax_m[generate_key(n, "compile_s")] for n in c["shape"]["gen_samples"]]
    lines.append(
        f"| {_key_columns(c)} | {' / '.join(f'{s:.2f}' for s in compile_s)} | {torch_m['compile_s']:.3f} "
        f"| {' '.join(map(compilations, c['runs']['lm_jax']))} "
        f"| {jax_m['peak_rss_mib']:,.0f} / {torch_m['peak_rss_mib']:,.0f} "
        f"| {_mib(jax_m.get('device_peak_mib'))} / {_mib(torch_m.get('device_peak_mib'))} |")

  broken_down = [c for c in configs if c["breakdown"]]  # rnn models in float32
  if broken_down:
    parts = list(broken_down[0]["breakdown"]["percent"])  # the same model depth in every config
    lines += ["", "## Where an lm_jax train step goes (% of the step, first round, float32)", "",
              "| model | size | vocab | step ms | " + " | ".join(parts) + " |",
              "|---|---|---:|" + "---:|" * (1 + len(parts))]
    for c in broken_down:
      percent = c["breakdown"]["percent"]
      lines.append(f"| {c['model']} | {c['size']} | {c['vocab']:,} | {c['breakdown']['step_ms']:.2f} | "
                   + " | ".join(f"{percent[part]:.0f}%" for part in parts) + " |")
    layers = list(broken_down[0]["breakdown"]["per_time_step_ms"])
    lines += ["", "Recurrent layers, ms per time step:", "",
              "| model | size | vocab | " + " | ".join(layers) + " |", "|---|---|---:|" + "---:|" * len(layers)]
    for c in broken_down:
      per_step = c["breakdown"]["per_time_step_ms"]
      lines.append(f"| {c['model']} | {c['size']} | {c['vocab']:,} | "
                   + " | ".join(f"{per_step[part]:.3f}" for part in layers) + " |")
    lines += ["", f"Derived from controlled ablations. {DERIVATION}"]
  return "\n".join(lines) + "\n"


def _dtypes(configs: list[dict]) -> list[str]:
  return list(dict.fromkeys(c["dtype"] for c in configs))


def _key_columns(config: dict) -> str:
  return f"{config['model']} | {config['size']} | {config['vocab']:,} | {config['dtype']}"


def _describe(shape: dict) -> str:
  if shape["model"] == TRANSFORMER:
    model = f"{shape['nlayers']}x{shape['nhid']}, {shape['nhead']} heads, ff {shape['nhid']}"
  else:
    model = f"{shape['nlayers']}x{shape['nhid']} {'tied' if shape['tied'] else 'untied'}"
  return f"{model}, B {shape['batch']}, T {shape['bptt']}"


def _ratios(config: dict, name: str) -> str:
  return ", ".join(f"{r:.2f}" for r in config["ratios"][name])


def _mib(value: float | None) -> str:
  return "-" if value is None else f"{value:,.0f}"


def plot(results: dict, path: Path) -> bool:
  """Bars of ms per train step, lm_jax vs PyTorch per model and dtype, a panel per size and vocabulary."""
  configs = results["configs"]
  panels = {}
  for c in configs:
    panels.setdefault(f"{c['size']}, vocabulary {c['vocab']:,}", []).append(
        (f"{c['model']}\n{DTYPE_LABELS[c['dtype']]}",
         {label: c["median"][framework]["train_ms"] for framework, label in FRAMEWORKS.items()},
         c["median_ratio"]["train"]))
  return plots.time_bars(panels, "ms per train step (lower is faster)", results["machine"]["name"], path)
