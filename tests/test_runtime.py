"""The allocator set-up: on Linux with glibc, large freed buffers are reused rather than re-faulted."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates, touches and frees a 64 MiB block (over glibc's largest mmap threshold) with plain
# malloc, as XLA does, and counts the page faults of the later rounds.
PROBE = """
import ctypes, resource, sys
from lm_jax import runtime
applied = runtime.reuse_freed_memory() if sys.argv[1] == "on" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 64 * 2**20, []
for _ in range(6):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  ctypes.memset(block, 1, size)
  libc.free(block)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, min(faults[2:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings are Linux-only")
def test_large_buffers_are_reused_instead_of_faulted_in_again():
  def run(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])

  applied, faults_on = run("on")
  if applied != "True":
    pytest.skip("this C library is not glibc")
  _, faults_off = run("off")
  pages = 64 * 2**20 // 4096
  assert faults_off > pages // 2  # the default: every 64 MiB buffer comes back page by page
  assert faults_on < pages // 20  # reused: almost no new pages
