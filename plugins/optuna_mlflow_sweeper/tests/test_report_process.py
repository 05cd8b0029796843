"""The sweep report's helper process: it draws from the storage, and when it cannot (gone,
killed, a storage it cannot open), the report is drawn in the sweep's process instead."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from hydra_plugins.optuna_mlflow_sweeper._impl.report_process import report_drawer, worth_a_helper


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -5, 5) ** 2 + trial.suggest_int("y", 0, 3)


def _stored_study(tmp_path: Path, trials: int = 3) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url,
                                sampler=optuna.samplers.RandomSampler(0))
    study.optimize(_objective, n_trials=trials)
    return study, url


def _started(n: int = 1) -> list[int]:
    """The `n` report helpers of this process, once each has its own command line (a child
    shows its parent's until it has exec'd): within 10 s."""
    deadline = time.monotonic() + 10
    while len(found := _helpers()) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def _helpers() -> list[int]:
    """This process' report helpers still running, by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        ppid, state = int(stat.rsplit(")", 1)[1].split()[1]), stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and state != "Z" and b"report_process" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_helper_draws_the_stored_study_as_it_ends(tmp_path: Path) -> None:
    study, url = _stored_study(tmp_path, trials=1)
    # an empty study of the same name here: only a drawing from the storage has trials to draw
    empty = optuna.create_study(study_name="s")
    out = tmp_path / "sweep_report.html"
    with report_drawer(True) as drawer:
        drawer.open(url, "s", 4)
        assert len(_started()) == 1
        study.optimize(_objective, n_trials=2)  # the sweep goes on after the helper started
        assert drawer.write(empty, str(out)) == str(out)
    assert _helpers() == []
    text = out.read_text()
    assert text.count("plotly.js v") == 1 and "Optimization history" in text
    assert '"x":[0,1,2]' in text  # the history has the trials told after the helper started


def test_a_storage_the_helper_cannot_open_is_drawn_here(tmp_path: Path) -> None:
    study, _ = _stored_study(tmp_path)
    out = tmp_path / "sweep_report.html"
    with report_drawer(True) as drawer:
        drawer.open(f"sqlite:///{tmp_path}/no/such/dir/x.db", "s", 4)
        assert drawer.write(study, str(out)) == str(out)
    assert "Optimization history" in out.read_text()


def test_a_killed_helper_leaves_the_report_to_the_sweep(tmp_path: Path) -> None:
    study, url = _stored_study(tmp_path)
    out = tmp_path / "sweep_report.html"
    with report_drawer(True) as drawer:
        drawer.open(url, "s", 4)
        [pid] = _started()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _helpers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drawer.write(study, str(out)) == str(out)
    assert "Optimization history" in out.read_text()


@pytest.mark.parametrize("enabled", [True, False])
def test_nothing_to_draw_writes_nothing(tmp_path: Path, enabled: bool) -> None:
    study, url = _stored_study(tmp_path, trials=0)
    out = tmp_path / "sweep_report.html"
    with report_drawer(enabled) as drawer:
        drawer.open(url, "s", 4)
        assert len(_started(int(enabled))) == int(enabled)
        assert drawer.write(study, str(out)) is None
    assert not out.exists() and _helpers() == []


def test_a_helper_is_worth_it_only_where_the_drawing_imports_are_still_to_make() -> None:
    fresh = subprocess.run([sys.executable, "-c", "from hydra_plugins.optuna_mlflow_sweeper._impl"
                            ".report_process import worth_a_helper; print(worth_a_helper())"],
                           capture_output=True, text=True, timeout=60)
    assert fresh.stdout.strip() == "True", fresh.stderr[-2000:]  # a user's command
    importlib.import_module("optuna.visualization")
    assert not worth_a_helper()  # a notebook, a test session: drawing here costs only the drawing


def test_leaving_without_a_report_stops_the_helper(tmp_path: Path) -> None:
    _, url = _stored_study(tmp_path)
    with pytest.raises(KeyboardInterrupt), report_drawer(True) as drawer:
        drawer.open(url, "s", 4)
        assert len(_started()) == 1
        raise KeyboardInterrupt
    assert _helpers() == []
