"""The test session's XLA flags (tests/xla_session.py): the older-emitter flag only for a jaxlib that has it (XLA
stops at a flag it does not know, so a jaxlib 0.11 session given it would not start), and the flags the session
started with given back to the optimised processes."""

from __future__ import annotations

import importlib.metadata
import os

import pytest

from tests import xla_session

EMITTERS = "--xla_cpu_use_fusion_emitters=false"


@pytest.mark.parametrize("version, expected", [("0.10.0", True), ("0.10.2", True), ("0.11.2", False),
                                               ("1.0.0", False), (None, False)])
def test_the_older_fusion_emitters_only_where_jaxlib_has_them(monkeypatch, version, expected):
  def installed(name):
    if version is None:
      raise importlib.metadata.PackageNotFoundError(name)
    return version
  monkeypatch.setattr(importlib.metadata, "version", installed)
  flags = xla_session.quick_compiling_flags()
  assert (EMITTERS in flags) == expected
  assert flags[:2] == ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]


def test_a_session_adds_its_flags_once_and_gives_back_the_ones_it_started_with(monkeypatch):
  monkeypatch.delenv(xla_session.FLAGS_BEFORE, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  xla_session.set_session_flags()
  session = xla_session.quick_compiling_flags()
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", *session]
  xla_session.set_session_flags()  # a process the session started: unchanged
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", *session]
  assert xla_session.optimised_environment()["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"


def test_a_callers_own_optimisation_level_stands(monkeypatch):
  monkeypatch.delenv(xla_session.FLAGS_BEFORE, raising=False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=2")
  xla_session.set_session_flags()
  assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=2"
