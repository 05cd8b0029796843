"""`plan()`: every check of a sweep, as tables, and nothing created.

Against Hydra's real config loader and the toy app's config, the sweeper's settings instantiated
from it as Hydra does (no sweep, no subprocess). The sweeps that reject a value in a real command
are in test_services.py, test_faults.py, test_search_space.py and test_warm_start.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from toyapp import APP

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.plan import (
    SweepPlan,
    budget,
    directions,
    metric_names,
    plan,
)

PASSWORD = "pl4n-" + "s3cret"


@pytest.fixture
def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """plan(overrides, arguments) as the sweeper's command would make it, in `tmp_path`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")

    def make(*overrides: str, arguments: tuple[str, ...] = ()) -> SweepPlan:
        master = compose("config", ["hydra/sweeper=optuna_mlflow", "hydra.sweeper.study_name=t",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
                         return_hydra_config=True)
        settings = instantiate(master.hydra.sweeper).sweeper.settings
        return plan(settings, master, GlobalHydra.instance().config_loader(), list(arguments))

    with initialize_config_dir(config_dir=str(APP.parent / "conf"), version_base=None):
        yield make


def test_a_plan_creates_nothing_and_holds_plain_values(planned: Any, tmp_path: Path) -> None:
    p = planned("hydra.sweeper.n_trials=3", arguments=("x=interval(-5,5)", "y=1.5"))
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no folder, store or run
    assert p.storage_url == f"sqlite:///{tmp_path}/sweep/optuna.db"
    assert (p.n_trials, p.directions, p.study_name) == (3, ("minimize",), "t")
    assert p.space.fixed == {"y": "y=1.5"} and list(p.space.distributions) == ["x"]
    assert p.parent_params["params.x"] == "interval(-5,5)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.n_trials = 4  # type: ignore[misc]


@pytest.mark.parametrize(("overrides", "arguments", "field", "expected"), [
    (["hydra.sweeper.n_trials=null", "hydra/sweeper/sampler=grid"], ["x=choice(1,2,3)"],
     "n_trials", 3),  # the whole grid
    (["hydra.sweeper.n_trials=10", "hydra/sweeper/sampler=grid"], ["x=choice(1,2)", "y=1,2,3"],
     "n_trials", 6),  # capped to the grid
    (["hydra.sweeper.n_trials=null", "hydra.sweeper.timeout=60"], [], "n_trials", float("inf")),
    (["hydra.sweeper.direction=[maximize,MINIMIZE]", "hydra.sweeper.metric_names=[a,b]"], [],
     "metric_names", ("a", "b")),
    (["hydra.sweeper.mlflow.registered_model_name=true"], [], "registered_model", "t"),
    (["hydra.sweeper.mlflow.registered_model_name=champ"], [], "registered_model", "champ"),
    (["hydra.sweeper.mlflow.registered_model_name=false"], [], "registered_model", None),
    (["hydra.sweeper.mlflow.enabled=false"], [], "tracking_uri", None),
    (["hydra.sweeper.allow_changed_overrides=[y]"], [], "allow_changed_overrides", ("y",)),
    (["+hydra.sweeper.enqueue=[{x:1.0}]"], ["x=interval(-5,5)"], "enqueue", ({"x": 1.0},)),
])
def test_settings_become_the_plan(planned: Any, overrides: list[str], arguments: list[str],
                                  field: str, expected: object) -> None:
    assert getattr(planned(*overrides, arguments=tuple(arguments)), field) == expected


@pytest.mark.parametrize(("overrides", "arguments", "key"), [
    (["hydra.sweeper.n_trials=0"], [], "hydra.sweeper.n_trials"),
    (["hydra.sweeper.n_jobs=0"], [], "hydra.sweeper.n_jobs"),
    (["hydra.sweeper.max_failure_rate=1.5"], [], "hydra.sweeper.max_failure_rate"),
    (["hydra.sweeper.n_trials=null"], [], "hydra.sweeper.n_trials"),  # no grid, no timeout
    (["hydra.sweeper.direction=up"], [], "hydra.sweeper.direction"),
    (["hydra.sweeper.metric_names=[a,b]"], [], "hydra.sweeper.metric_names"),
    (["hydra.sweeper.mlflow.registered_model_name=3"], [],
     "hydra.sweeper.mlflow.registered_model_name"),
    (["hydra.sweeper.custom_search_space=no.such.fn"], [], "hydra.sweeper.custom_search_space"),
    (["hydra.sweeper.validate=no.such.fn"], [], "hydra.sweeper.validate"),
    (["+hydra.sweeper.enqueue=[{x:9.0}]"], ["x=interval(-5,5)"], "hydra.sweeper.enqueue.0.x"),
    (["hydra/sweeper/sampler=grid"], ["x=interval(-5,5)"], "x (command-line override)"),
    ([], ["nokey=interval(0,1)"], "nokey (command-line override)"),
    ([], ["x=interval(5,1)"], "x (command-line override)"),
    (["hydra.sweeper.storage=sqlite:////nonexistent/dir/optuna.db"], [],
     "hydra.sweeper.storage"),
    (["hydra.sweeper.storage=mssql+pyodbc://u@h/db"], [], "hydra.sweeper.storage"),  # no driver
    (["hydra.sweeper.warm_start.study_name=earlier"], [], "hydra.sweeper.warm_start.study_name"),
    (["hydra.sweeper.warm_start.study_name=earlier", "hydra.sweeper.warm_start.top_k=0"], [],
     "hydra.sweeper.warm_start.top_k"),
])
def test_a_rejected_setting_is_named_and_nothing_is_created(
    planned: Any, tmp_path: Path, overrides: list[str], arguments: list[str], key: str,
) -> None:
    with pytest.raises(SweeperConfigError) as error:
        planned(*overrides, arguments=tuple(arguments))
    assert f"'{key}'" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("from_env", "key"), [
    (True, "MLFLOW_TRACKING_URI"), (False, "hydra.sweeper.mlflow.tracking_uri")])
def test_a_bad_tracking_uri_names_where_it_came_from(
    planned: Any, monkeypatch: pytest.MonkeyPatch, from_env: bool, key: str,
) -> None:
    """The environment wins over the config (resolve_tracking_uri), so its errors name it."""
    bad = "sqlite:////nonexistent/dir/mlflow.db"
    if from_env:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", bad)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(SweeperConfigError, match=f"'{key}'"):
        planned(f"hydra.sweeper.mlflow.tracking_uri={bad}")


def test_every_password_is_masked_and_travels_in_the_environment(
    planned: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storage and a warm-start source with passwords: the plan's config (multirun.yaml) and
    parent params show neither; the jobs get the real storage URL from the environment. (As a
    worker: no first contact with the servers, which do not exist.)"""
    monkeypatch.setenv("OPTUNA_MLFLOW_WORKER", "1")
    storage = f"postgresql://u:{PASSWORD}@127.0.0.1:1/optuna"
    p = planned(f"hydra.sweeper.storage='{storage}'")
    assert p.secret_env == {"OPTUNA_MLFLOW_STORAGE": p.storage_url}
    assert PASSWORD in p.storage_url and p.storage_url.startswith("postgresql+")
    assert PASSWORD not in p.storage_masked + p.config_yaml + str(p.parent_params)


@pytest.mark.parametrize("n_trials, grid, timeout, expected", [
    (20, None, None, 20),
    (20, 6, None, 6),  # capped to the grid
    (None, 6, None, 6),  # the whole grid
    (None, None, 60, float("inf")),  # no limit but the timeout
    (4, 6, 60, 4),
])
def test_budget(n_trials: int | None, grid: int | None, timeout: float | None,
                expected: float) -> None:
    assert budget(n_trials, grid, timeout) == expected


def test_budget_without_limit_names_the_key() -> None:
    with pytest.raises(SweeperConfigError, match="hydra.sweeper.n_trials"):
        budget(None, None, None)


@pytest.mark.parametrize("value, expected", [
    ("minimize", ["minimize"]), ("MAXIMIZE", ["maximize"]),
    (["maximize", "minimize"], ["maximize", "minimize"]),
    ("maximise", None), ([], None), (["minimize", 3], None),
])
def test_directions(value: object, expected: list[str] | None) -> None:
    if expected is None:
        with pytest.raises(SweeperConfigError, match="hydra.sweeper.direction"):
            directions(value)
    else:
        assert directions(value) == expected


@pytest.mark.parametrize("names, n, expected", [
    (None, 1, None), ("val_accuracy", 1, ["val_accuracy"]), (["a", "b"], 2, ["a", "b"]),
    (["a"], 2, "error"), (["a", ""], 2, "error"),
])
def test_metric_names(names: object, n: int, expected: list[str] | str | None) -> None:
    dirs = ["maximize"] * n
    if expected == "error":
        with pytest.raises(SweeperConfigError, match="hydra.sweeper.metric_names"):
            metric_names(names, dirs)
    else:
        assert metric_names(names, dirs) == expected
