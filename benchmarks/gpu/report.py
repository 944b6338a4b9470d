"""The GPU report: the cuDNN backend's check and timing, the AWD-LSTM config's train step, the tests' summary and
what the time left unmeasured, then the step-time report of the configs measured (step_time/report.py)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common.rounds import FRAMEWORKS
from benchmarks.step_time import report as step_time_report

ERRORS = {"logits": "logits", "logits_short_window": "logits, short window", "state_after_short_window":
          "state after it", "train_losses": "20 train losses", "trained_params": "params after 20 steps"}


def markdown(results: dict) -> str:
  lines = [f"# GPU check: {results['machine']['name']}", "",
           f"{results['date']} · `bash benchmarks/gpu/check.sh` (benchmarks/README.md) · JAX "
           f"{results['machine']['versions']['jax']} on {results['machine']['device_kind']}, PyTorch "
           f"{results['machine']['versions']['torch']}. float32 is float32 on both sides (JAX's default matmul "
           "precision 'highest', PyTorch's and cuDNN's TF32 off); bfloat16 rows are lm_jax's matmul_dtype against "
           "torch.autocast."]
  if results["quick"]:
    lines += ["", "**Dry run on a CPU with cut sizes, the kernel replaced by its reference: these numbers check "
              "the script, they measure nothing.**"]
  lines += ["", "## Tests", "", results["tests"] or "Not run."]
  lines += _cudnn_lines(results) + _awd_lines(results["awd"])
  if results["unmeasured"]:
    lines += ["", f"## Left out: the time budget ran out before {len(results['unmeasured'])} config(s)", "",
              ", ".join(results["unmeasured"]) + "."]
  text = "\n".join(lines) + "\n"
  return text + "\n" + (step_time_report.markdown(results) if results["configs"] else "No step-time config measured.\n")


def _cudnn_lines(results: dict) -> list[str]:
  rows = results["cudnn"]
  if not rows:
    return ["", "## cuDNN LSTM backend", "", "Not run."]
  torch_ms = {(c["size"], c["vocab"]): c["median"]["pytorch"]["train_ms"] for c in results["configs"]
              if c["model"] == "lstm" and c["dtype"] == "float32"}
  lines = ["", "## cuDNN LSTM backend (config.model.rnn_backend='cudnn') against the scan", "",
           f"Tolerances: logits {rows[0]['tolerances']['logits']:g}, training "
           f"{rows[0]['tolerances']['training']:g} (max|a - b| / max|b|); train steps: the reference recipe with "
           "the size's dropout, batch x bptt as in the step-time suite.", "",
           "| size | model | " + " | ".join(ERRORS.values()) + " | passed | ms/step scan | ms/step cuDNN | "
           "cuDNN speedup | ms/step PyTorch (cuDNN, step-time suite) |", "|---|---|" + "---:|" * (len(ERRORS) + 5)]
  for row in rows:
    pytorch = torch_ms.get((row["size"], row["shape"]["vocab"]))
    lines.append(f"| {row['size']} | {row['model']} | " + " | ".join(f"{row['errors'][e]:.1e}" for e in ERRORS)
                 + f" | {'yes' if row['passed'] else '**no**'} | {row['train_ms']['scan']:.2f} | "
                 f"{row['train_ms']['cudnn']:.2f} | {row['cudnn_speedup']:.2f}x | "
                 + ("-" if pytorch is None else f"{pytorch:.2f}") + " |")
  return lines


def _awd_lines(awd: dict) -> list[str]:
  if not awd:
    return ["", "## AWD-LSTM config", "", "Not run."]
  config, runs = awd["config"], awd["runs"]
  m = config["model"]
  return ["", f"## AWD-LSTM config (configs/awd_ptb.py): {runs['lm_jax']['model']}", "",
          f"Batch {config['batch_size']}, windows of {config['bptt']}, vocabulary {awd['vocab']:,}; dropouts "
          f"{m['dropout']}/{m['dropouti']}/{m['dropouth']}/{m['dropoute']}, wdrop {m['wdrop']}, AR "
          f"{config['ar_alpha']:g}, TAR {config['tar_beta']:g}, SGD lr {config['optim']['lr']:g} with weight decay "
          f"{config['optim']['weight_decay']:g}, clip {config['optim']['clip']:g}; fresh masks every window on "
          "both sides.", "",
          "| | " + " | ".join(FRAMEWORKS.values()) + " | lm_jax speedup |", "|---|" + "---:|" * (len(FRAMEWORKS) + 1),
          "| train ms/step | " + " | ".join(f"{runs[f]['train_ms']:.2f}" for f in FRAMEWORKS)
          + f" | {runs['pytorch']['train_ms'] / runs['lm_jax']['train_ms']:.2f}x |",
          "| first step, s (lm_jax: compilation) | " + " | ".join(f"{runs[f]['compile_s']:.2f}" for f in FRAMEWORKS)
          + " | |"]


def plot(results: dict, path: Path) -> bool:
  return bool(results["configs"]) and step_time_report.plot(results, path)

