"""The sweep's stores and servers: each URL with its database driver pinned, and one short
first contact with each, before anything is created.

A wrong address is not an outage: the command a user typed tries each service once, quickly
(`TIMEOUT_S`, MLflow's own HTTP retries off), and stops with one line naming it; workers and trial
jobs skip the contact (the command proved the address; they may start during an outage).
"""

from __future__ import annotations

import importlib.util
import logging
import os

from hydra_plugins.optuna_mlflow_sweeper._impl.env import started_by_a_sweep
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import Unreachable, unreachable_cause
from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import hide_mlflow_run_links
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url, sqlite_path, tracking_key

log = logging.getLogger(__name__)
TIMEOUT_S = 5  # the first contact with a service
SEARCH_EXPERIMENTS = "/api/2.0/mlflow/experiments/search"
# dialect+driver -> (module to import, what to pip install); a bare scheme -> its drivers, preferred
# first: SQLAlchemy's own default differs between its versions (psycopg2 in 2.0, psycopg in 2.1)
DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql+psycopg": ("psycopg", "psycopg[binary]"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql+pymysql": ("pymysql", "PyMySQL"),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
    "mssql+pyodbc": ("pyodbc", "pyodbc"),
}
_POSTGRES = ["postgresql+psycopg", "postgresql+psycopg2", "postgresql+pg8000"]
DEFAULTS = {"postgresql": _POSTGRES, "postgres": _POSTGRES,
            "mysql": ["mysql+mysqldb", "mysql+pymysql"], "mssql": ["mssql+pyodbc"]}
NAMES = {"postgresql": "PostgreSQL", "postgres": "PostgreSQL", "mysql": "MySQL",
         "mssql": "SQL Server"}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def with_driver(url: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg://...` (the installed driver), so the sweeper,
    its workers and MLflow open a URL the same way; others as given."""
    scheme, sep, rest = url.partition("://")
    for candidate in DEFAULTS.get(scheme.lower(), []) if sep else []:
        if installed(DRIVERS[candidate][0]):
            return f"{candidate}://{rest}"
    return url


def checked_db_url(url: str, key: str) -> str:
    """`url` with its driver pinned; a config error naming the package when none is installed
    (SQLAlchemy's own error names neither the scheme nor the package)."""
    scheme = url.partition("://")[0].lower()
    drivers = DEFAULTS.get(scheme) or ([scheme] if scheme in DRIVERS else [])
    if drivers and not any(installed(DRIVERS[d][0]) for d in drivers):
        name = NAMES.get(scheme.partition("+")[0], scheme)
        extra = " (or the postgres extra)" if name == "PostgreSQL" else ""
        raise config_error(key, mask_url(url), f"a database URL whose driver is installed; the "
                           f"{name} driver is missing: pip install '{DRIVERS[drivers[0]][1]}'"
                           f"{extra}")
    return with_driver(url)


def sqlite_folder_exists(url: str, key: str) -> None:
    """`sqlite:////no/such/dir/x.db`: a config error naming `key`, not a folder made."""
    folder = os.path.dirname(sqlite_path(url) or "")
    if folder and not os.path.isdir(folder):
        raise config_error(key, mask_url(url), f"a SQLite file in an existing folder "
                           f"({folder} does not exist)")


def check_storage(url: str, key: str) -> None:
    """The Optuna storage `url` (driver pinned) opens, its database exists, we may log in."""
    sqlite_folder_exists(url, key)
    if not started_by_a_sweep() and not url.startswith("sqlite"):
        _check_database(url, "Optuna storage")


def check_tracking(uri: str, config_key: str) -> None:
    """The MLflow tracking URI answers: a server accepts our credentials, a database opens; errors
    name `config_key`, or MLFLOW_TRACKING_URI when it is set (`tracking_key`). Called by the
    sweeper and the app before they record: MLflow's run links go off here."""
    hide_mlflow_run_links()
    sqlite_folder_exists(uri, tracking_key(config_key))
    if started_by_a_sweep() or uri.startswith("sqlite") or "://" not in uri:
        return
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif uri.partition("://")[0].partition("+")[0] in NAMES:
        _check_database(uri, "MLflow tracking store")


def _check_database(url: str, service: str) -> None:
    import sqlalchemy  # the stores' own dependency, loaded once a database URL is used

    url = with_driver(url)
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
    from mlflow.utils.credentials import get_default_host_creds  # MLflow only when it is on
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
