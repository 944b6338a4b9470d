"""The opening and the targets table every benchmark report shares."""

from __future__ import annotations


def machine_lines(results: dict, torch_device: str) -> list[str]:
  """A report's opening: date, both frameworks' devices, CPU, library versions, the matmul ceilings, the
  memory bandwidth and native bfloat16."""
  machine = results["machine"]
  n = machine["matmul_n"]
  return [
      f"{results['date']} · JAX device {machine['device_kind']} ({machine['platform']}) · PyTorch device "
      f"{torch_device} · CPU {machine['cpu']} x {machine['cpu_count']}",
      "",
      " · ".join(f"{name} {version}" for name, version in machine["versions"].items()),
      "",
      f"Matmul ceilings ({n}² @ {n}², best of 5): jax float32 {machine['jax_matmul_gflops']:.1f} GFLOP/s, "
      f"bfloat16 (float32 accumulation) {machine['jax_bf16_matmul_gflops']:.1f} GFLOP/s; numpy float32 "
      f"{machine['numpy_matmul_gflops']:.1f} GFLOP/s. Memory bandwidth (jitted sum of {machine['bandwidth_mib']} MiB, "
      f"best of 5): {machine['bandwidth_gb_per_s']:.1f} GB/s. Native bfloat16: {machine['bfloat16_support'] or 'none'}.",
  ]


def targets_lines(targets: list[dict]) -> list[str]:
  return (["## Targets", "", "| target | measured | met |", "|---|---|---|"]
          + [f"| {t['target']} | {t['measured'] or '-'} | {_verdict(t['met'])} |" for t in targets])


def _verdict(met: bool | None) -> str:
  return {True: "met", False: "**not met**", None: "not measured"}[met]
