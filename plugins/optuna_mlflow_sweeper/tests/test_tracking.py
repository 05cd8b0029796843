"""The one tracking-URI rule and the MLflow UI links, for local stores and tracking servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url
from hydra_plugins.optuna_mlflow_sweeper.tracking import resolve_tracking_uri, ui_links


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return monkeypatch


def test_the_environment_wins_then_the_config_then_the_default(
    no_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_env.chdir(tmp_path)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path}/runs/x.db"
    assert resolve_tracking_uri("http://host:5000") == "http://host:5000"
    assert resolve_tracking_uri("mlruns") == os.path.join(str(tmp_path), "mlruns")
    no_env.setenv("MLFLOW_TRACKING_URI", "http://server:5000")
    assert resolve_tracking_uri("sqlite:///configured.db") == "http://server:5000"
    no_env.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri("http://configured") == f"sqlite:///{tmp_path}/env.db"


def test_a_local_store_needs_the_ui_started_first() -> None:
    links = ui_links("sqlite:////tmp/my store/mlflow.db", "3", "abc")
    assert links["command"] is not None
    assert links["command"].endswith(
        "ui --backend-store-uri 'sqlite:////tmp/my store/mlflow.db' --port 5000")
    assert links["run"] == ("http://127.0.0.1:5000/#/experiments/3/runs/abc"
                            "?workflowType=machine_learning")
    assert links["experiment"] == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    assert ui_links("sqlite:///x.db", "1", "r", port=8080)["command"].endswith("--port 8080")


def test_a_tracking_server_serves_its_own_ui_without_credentials_in_the_link() -> None:
    links = ui_links("https://user:secret@mlflow.example.com:8443/prefix/", "7", "run1")
    assert links["command"] is None
    assert links["run"] == ("https://mlflow.example.com:8443/prefix/#/experiments/7/runs/run1"
                            "?workflowType=machine_learning")
    assert links["experiment"] == ("https://mlflow.example.com:8443/prefix/#/experiments/7"
                                   "?workflowType=machine_learning")
    assert "secret" not in str(links)
    assert ui_links("http://127.0.0.1:5000", "1", "r")["run"].startswith(
        "http://127.0.0.1:5000/#/experiments/1/runs/r?")


def test_the_compare_page_link_is_the_one_mlflows_ui_builds() -> None:
    """`#/compare-runs?runs=<JSON>&experiments=<JSON>` (MLflow 3's getCompareRunPageRoute),
    quotes escaped so that a terminal keeps the link whole; none for a single run."""
    links = ui_links("http://u:pw@mlflow:5000", "4", "parent", compared=["r1", "r2"])
    assert links["compare"] == ("http://mlflow:5000/#/compare-runs?runs=[%22r1%22,%22r2%22]"
                                "&experiments=[%224%22]")
    assert ui_links("http://mlflow:5000", "4", "parent", compared=["r1"])["compare"] is None


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert mask_url("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
