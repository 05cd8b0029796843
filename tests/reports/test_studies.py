"""The per-user index of sweeps' studies: written once a sweep runs, kept per storage, and the
MLflow parent run's tags when it knows nothing."""

from __future__ import annotations

import json

import optuna
import pytest

from mnist_sweep.reports import report, studies
from tests.helpers import NO_REFERENCE, SMALL, run_sweep


@pytest.fixture
def index(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "state" / "mnist-sweep" / "studies.json"


def test_studies_of_one_name_in_two_storages_are_both_kept(tmp_path, index, monkeypatch, capsys):
    first, second = (f"sqlite:///{tmp_path}/{n}.db" for n in ("first", "second"))
    for url, trials in ((first, 1), (second, 2)):
        study = optuna.create_study(study_name="twin", storage=url)
        for _ in range(trials):
            study.enqueue_trial({})
            study.tell(study.ask(), 0.5)
    studies.record("twin", str(tmp_path / "a"), first)
    studies.record("twin", str(tmp_path / "b"), second)
    assert [e["storage"] for e in studies.known()["twin"]] == [second, first]
    studies.record("twin", str(tmp_path / "a"), first)  # recorded again: the newest again
    assert [e["storage"] for e in studies.known()["twin"]] == [first, second]

    monkeypatch.chdir(tmp_path)
    assert report.main(["twin", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("COMPLETE") == 1  # the newest: first.db's one trial
    assert captured.err.count("\n") == 1 and second in captured.err


def test_an_index_from_before_keeps_its_entries(tmp_path, index):
    index.parent.mkdir(parents=True)
    old = {"sweep_dir": str(tmp_path / "old"), "storage": f"sqlite:///{tmp_path}/old/optuna.db"}
    index.write_text(json.dumps({"old": old}))
    assert studies.known() == {"old": [old]}
    studies.record("old", str(tmp_path / "new"), None)
    assert [e["storage"] for e in studies.known()["old"]] == [
        f"sqlite:///{tmp_path}/new/optuna.db", old["storage"]]


@pytest.mark.slow
def test_only_a_sweep_that_runs_is_recorded_and_mlflow_knows_it_too(
        tmp_path, index, monkeypatch, capsys):
    """A sweep its checks reject leaves no entry (nothing to point at); one that runs is recorded
    from its first job, with the storage it was given; with the index gone, the report finds the
    study through the storage its MLflow parent run is tagged with."""
    sweep_index = tmp_path / "state" / "mnist-sweep" / "studies.json"  # run_sweep's state home
    assert sweep_index == index
    proc = run_sweep(tmp_path, "sweep=quickstart", *SMALL, "hydra.sweeper.direction=maximise",
                     ok=False)
    assert proc.returncode != 0 and "maximise" in proc.stderr
    assert not index.exists()

    (tmp_path / "studies").mkdir()
    storage = f"sqlite:///{tmp_path}/studies/optuna.db"
    run_sweep(tmp_path, "sweep=quickstart", *SMALL, "hydra.sweeper.n_trials=1", NO_REFERENCE,
              f"hydra.sweeper.storage={storage}")
    [entry] = studies.known()["quickstart"]
    assert entry["storage"] == storage
    assert entry["sweep_dir"] == str(tmp_path / "multirun" / "quickstart")

    index.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert report.main(["quickstart"]) == 2  # no index, no ./mlflow.db: nothing to ask
    assert "quickstart" in capsys.readouterr().err
    tracking_uri = f"sqlite:///{tmp_path}/store.db"  # run_sweep's tracking store
    assert report.main(["quickstart", "--tracking-uri", tracking_uri]) == 0
    assert capsys.readouterr().out.count("COMPLETE") == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert report.main(["quickstart"]) == 0
