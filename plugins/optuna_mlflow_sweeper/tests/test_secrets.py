"""Passwords masked before Hydra saves the sweep config or jobs compose theirs from it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from toyapp import study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import (
    known_secrets,
    redact,
    scrub_config,
    url_password,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import AUTH_ADMIN, MlflowServer, Postgres

URL = "postgresql://sweeper:s3cr%40t-pw@db:5432/optuna"


def test_redact_masks_url_passwords_and_known_secrets() -> None:
    assert url_password(URL) == "s3cr@t-pw"
    assert redact(f"storage={URL}") == "storage=postgresql://sweeper:***@db:5432/optuna"
    assert redact("token tok-123 and tok-123", {"tok-123"}) == "token *** and ***"
    assert redact("http://host:5000/x") == "http://host:5000/x"


def test_known_secrets_come_from_urls_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-pw")
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://u:env-pw@h/db")
    assert {"s3cr@t-pw", "mlflow-pw", "env-pw"} <= known_secrets([URL, None])


def test_scrub_config_masks_overrides_and_values_but_keeps_interpolations() -> None:
    config = OmegaConf.create({"hydra": {
        "overrides": {"hydra": [f"hydra.sweeper.storage={URL}"], "task": ["x=1"]},
        "sweeper": {"storage": URL, "mlflow": {"tracking_uri": "${oc.env:TRACKING}"}},
    }})
    OmegaConf.set_readonly(config.hydra, True)
    scrub_config(config, known_secrets([URL]))
    text = OmegaConf.to_yaml(config)
    assert "s3cr" not in text
    assert config.hydra.overrides.hydra == [
        "hydra.sweeper.storage=postgresql://sweeper:***@db:5432/optuna"]
    assert config.hydra.sweeper.storage == "postgresql://sweeper:***@db:5432/optuna"
    assert "${oc.env:TRACKING}" in text


def test_a_password_from_a_config_file_is_masked_by_an_added_override() -> None:
    config = OmegaConf.create({"hydra": {"overrides": {"hydra": [], "task": []},
                                         "sweeper": {"storage": URL}}})
    scrub_config(config, known_secrets([URL]))
    assert config.hydra.overrides.hydra == [
        "++hydra.sweeper.storage='postgresql://sweeper:***@db:5432/optuna'"]


@pytest.mark.parametrize(("url", "masked", "password"), [
    ("postgresql://user:secret@host/db", "postgresql://user:***@host/db", "secret"),
    (URL, "postgresql://sweeper:***@db:5432/optuna", "s3cr@t-pw"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db", None),
    ("sqlite:////tmp/optuna.db", "sqlite:////tmp/optuna.db", None),
    # MLflow tracking servers: http(s), a path, a query
    ("http://u:pw@host:5000/x/", "http://u:***@host:5000/x/", "pw"),
    ("https://u:p%2Fw@h/mlflow?x=1", "https://u:***@h/mlflow?x=1", "p/w"),
    ("http://:pw@host", "http://:***@host", "pw"),
    ("http://host:5000", "http://host:5000", None),
    # an unencoded @ in the password: SQLAlchemy would take its rest for the host
    ("http://u:p@ss@h/", "http://u:***@h/", "p@ss"),
    ("databricks", "databricks", None),
    ("/abs/mlruns", "/abs/mlruns", None),
])
def test_masking_a_url_hides_its_password_only(
    url: str, masked: str, password: str | None
) -> None:
    assert mask_url(url) == masked
    assert url_password(url) == password


def test_a_warm_start_storage_password_is_masked_in_every_file_and_line(
    tmp_path: Path, env: dict[str, str], postgres: Postgres
) -> None:
    """Every URL the sweep is given is masked, not only `hydra.sweeper.storage`: here a real
    PostgreSQL holds the earlier study a warm start reads, its password typed on the command
    line; no file under the sweep, nor its output, may show it."""
    url = postgres.url("optuna", driver="postgresql+psycopg")
    early = optuna.create_study(study_name="early_secret", storage=url,
                                load_if_exists=True)
    early.add_trial(create_trial(value=1.0, params={"x": 1.5},
                                 distributions={"x": FloatDistribution(-5, 5)}))
    proc = sweep(tmp_path, env, "x=interval(-5.0,5.0)", "hydra.sweeper.n_trials=1",
                 "hydra.sweeper.warm_start.study_name=early_secret",
                 f"hydra.sweeper.warm_start.storage={url}")
    assert study(tmp_path).trials[0].params["x"] == 1.5  # the warm start took place
    texts = {str(p): p.read_text(errors="replace")
             for p in (tmp_path / "sweep").rglob("*") if p.is_file() and p.suffix != ".db"}
    texts.update(stdout=proc.stdout, stderr=proc.stderr)
    assert any(k.endswith(".hydra/hydra.yaml") for k in texts)
    assert [where for where, text in texts.items() if postgres.password in text] == []
    assert "sweeper:***@127.0.0.1" in texts[str(tmp_path / "sweep" / "multirun.yaml")]


def test_mlflows_own_run_links_never_show_the_tracking_password(
    tmp_path: Path, env: dict[str, str], mlflow_auth_server: MlflowServer
) -> None:
    """MLflow prints "View run NAME at: URL" as each run ends, the URL with the password of a
    `http://user:PW@host` tracking URI: off, for the sweeper's runs and the app's (the toy job
    logs into its child run), which print their own links, without credentials."""
    password = mlflow_auth_server.admin_password  # type: ignore[attr-defined]
    uri = mlflow_auth_server.url.replace("http://", f"http://{AUTH_ADMIN}:{password}@")
    proc = sweep(tmp_path, {**env, "MLFLOW_TRACKING_URI": uri}, "x=interval(-5,5)",
                 "hydra.sweeper.n_trials=1", "log_mlflow=true",
                 "hydra.sweeper.study_name=links")
    assert password not in proc.stdout + proc.stderr
    assert "View run" not in proc.stdout + proc.stderr
    assert f"{mlflow_auth_server.url}/#/experiments/" in proc.stdout  # the sweeper's own link
