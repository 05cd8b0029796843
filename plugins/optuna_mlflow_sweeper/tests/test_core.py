"""The sweep command's failures, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from toyapp import study, sweep


@pytest.mark.parametrize(("overrides", "says"), [
    (["x=choice(1,2)", "hydra.sweeper.enqueue=[{x:3}]"], "'hydra.sweeper.enqueue.0.x'"),
    pytest.param(["x=interval(-5,5)", "fail=true", "hydra.sweeper.max_failure_rate=0.1"],
                 "more than hydra.sweeper.max_failure_rate=0.1", marks=pytest.mark.slow),
    (["x=interval(-5,5)", "hydra.sweep.dir=/proc/no-such-place"], "'hydra.sweep.dir'"),
])
def test_clean_failures_are_one_line_without_a_traceback(
    tmp_path: Path, env: dict[str, str], overrides: list[str], says: str
) -> None:
    proc = sweep(tmp_path, env, "hydra.sweeper.n_trials=2", *overrides, ok=False)
    assert proc.returncode != 0
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    storage = tmp_path / "sweep" / "optuna.db"
    if storage.exists() and "max_failure_rate" not in says:
        assert not study(tmp_path).trials  # refused before any trial
