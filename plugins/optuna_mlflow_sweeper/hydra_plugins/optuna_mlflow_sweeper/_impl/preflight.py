"""Before anything is created: can each service the command will use be reached, once, quickly?

A wrong address is not an outage. The command a user typed tries every service once with a short
timeout (`TIMEOUT_S`, MLflow's own HTTP retries off) and stops with one line naming the service,
its masked URL and the cause; the traceback goes to the log (DEBUG). Only after this first contact
does an error count as an outage, waited out with the patience. Workers and trial jobs that a
sweep starts skip the check: the command that started them proved the address, and they may
start during an outage.

A SQLite path whose folder does not exist is a config error: a typo must not create folders.
"""

from __future__ import annotations

import logging
import os

from hydra_plugins.optuna_mlflow_sweeper._impl.drivers import with_driver
from hydra_plugins.optuna_mlflow_sweeper._impl.env import started_by_a_sweep
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import Unreachable, unreachable_cause
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import hide_mlflow_run_links
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url

log = logging.getLogger(__name__)
TIMEOUT_S = 5
SEARCH_EXPERIMENTS = "/api/2.0/mlflow/experiments/search"


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///path` URL (None: another database, or in memory)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return url[len("sqlite:///"):].split("?")[0]


def missing_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist (opening it would create it)."""
    path = sqlite_path(url)
    return path is not None and not os.path.exists(path)


def sqlite_folder_exists(url: str, key: str) -> None:
    """`sqlite:////no/such/dir/x.db`: a config error naming `key`, not a folder made."""
    path = sqlite_path(url)
    if path is None:
        return
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise config_error(key, mask_url(url), f"a SQLite file in an existing folder "
                           f"({folder} does not exist)")


def check_storage(url: str, key: str) -> None:
    """The Optuna storage `url` (driver pinned) opens, its database exists, we may log in."""
    sqlite_folder_exists(url, key)
    if started_by_a_sweep() or url.startswith("sqlite"):
        return
    _check_database(url, "Optuna storage")


def check_tracking(uri: str, key: str) -> None:
    """The MLflow tracking URI answers: a server accepts our credentials, a database opens.
    Called by the sweeper and the app before they record: MLflow's run links go off here."""
    hide_mlflow_run_links()
    sqlite_folder_exists(uri, key)
    if started_by_a_sweep() or uri.startswith("sqlite") or "://" not in uri:
        return
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif uri.partition("://")[0].partition("+")[0] in ("postgresql", "postgres", "mysql",
                                                         "mssql"):
        _check_database(uri, "MLflow tracking store")


def _check_database(url: str, service: str) -> None:
    import sqlalchemy

    url = with_driver(url)  # as MLflow and Optuna will open it
    timeout_arg = "timeout" if "pg8000" in url.partition("://")[0] else "connect_timeout"
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={timeout_arg: TIMEOUT_S})
    try:
        with engine.connect():
            pass
    except Exception as e:
        raise _unreachable(service, url, e) from None
    finally:
        engine.dispose()


def _check_server(uri: str) -> None:
    """One authenticated call (search one experiment), no retries, `TIMEOUT_S` at most."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), SEARCH_EXPERIMENTS, "POST",
                                max_retries=0, timeout=TIMEOUT_S, raise_on_status=False,
                                json={"max_results": 1})
    except Exception as e:
        raise _unreachable("MLflow tracking server", uri, e) from None
    if response.status_code in (401, 403):
        raise Unreachable(
            f"the MLflow tracking server at {mask_url(uri)} refused our credentials (HTTP "
            f"{response.status_code}): check MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD")
    if response.status_code != 200:
        raise Unreachable(f"cannot use the MLflow tracking server at {mask_url(uri)}: HTTP "
                          f"{response.status_code} from {SEARCH_EXPERIMENTS} (is it an MLflow "
                          "tracking server?)")


def _unreachable(service: str, url: str, error: BaseException) -> Unreachable:
    log.debug("first contact with the %s failed", service, exc_info=error)
    cause = unreachable_cause(error)
    verb = ("log in to" if "password" in cause else
            "open" if "does not exist" in cause else "reach")
    return Unreachable(f"cannot {verb} the {service} at {mask_url(url)}: {cause}")
