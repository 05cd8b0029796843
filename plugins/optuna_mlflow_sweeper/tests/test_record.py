"""The sweep's record at the end: a part that cannot be written is warned of, the rest stands
(a real toy sweep, its results file blocked by a folder of the same name)."""

from __future__ import annotations

from pathlib import Path

from toyapp import XY, runs, study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.record import warned


def test_warned_returns_the_value_or_none_with_a_warning(caplog) -> None:
    assert warned(int, "reading a number", "7") == 7
    assert warned(int, "reading a number", "seven") is None
    assert "reading a number failed: ValueError" in caplog.text


def test_a_results_file_that_cannot_be_written_leaves_the_rest_of_the_record(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "sweep" / "optimization_results.yaml").mkdir(parents=True)
    proc = sweep(tmp_path, env, *XY, "hydra.sweeper.n_trials=2")
    shown = proc.stdout + proc.stderr
    assert "writing the sweep's results failed: IsADirectoryError" in shown, shown[-3000:]
    assert "all results     (not written" in proc.stdout
    best = study(tmp_path).best_trial
    assert f"best trial {best.number}: value={best.value:.6g}" in proc.stdout
    _, [parent], children = runs(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert (tmp_path / "sweep" / "sweep_report.html").exists()
    assert "sweep recorded in MLflow as parent run" in proc.stdout
