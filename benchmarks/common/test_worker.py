"""benchmarks/common/worker.py: a worker's bad input reaches the benchmark as the one line lm_jax's commands print."""

from __future__ import annotations

import pytest

from benchmarks.common.worker import call_worker
from lm_jax.errors import UserError


def test_a_workers_user_error_is_raised_as_its_own_line(tmp_path, capfd):
  missing = tmp_path / "missing" / "plot.png"
  with pytest.raises(UserError) as raised:
    call_worker("lm_jax.cli.common:require_output_folder", {"flag": "plot", "path": str(missing)})
  assert str(raised.value) == (f"--plot={missing}: folder {missing.parent} does not exist; create it or pass another "
                               "path")
  assert "Traceback" not in capfd.readouterr().err


def test_a_workers_result_is_its_last_json_line():
  assert call_worker("json:loads", {"s": '{"a": [1, 2]}'}) == {"a": [1, 2]}


def test_a_workers_result_may_be_any_json():
  assert call_worker("json:loads", {"s": "[1, 2.5]"}) == [1, 2.5]
