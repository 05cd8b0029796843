"""Database URLs: pick an installed driver, or say in one line which package to install.

SQLAlchemy turns a missing driver into `ImportError: Failed to import DB access module` (Optuna)
or a long traceback (MLflow), naming neither the URL's scheme nor the package; and `postgresql://`
means psycopg2 under SQLAlchemy 2.0 but psycopg 3 under 2.1. Here a bare `postgresql://` is
pinned to whichever PostgreSQL driver is installed (psycopg 3 first: the `postgres` extra), so the
sweeper, its workers and MLflow all open the same URL the same way.
"""

from __future__ import annotations

import importlib.util

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import config_error
from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import mask_url

# dialect+driver -> (module to import, what to pip install)
DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql+psycopg": ("psycopg", "psycopg[binary]"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql+pymysql": ("pymysql", "PyMySQL"),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
    "mssql+pyodbc": ("pyodbc", "pyodbc"),
}
# a scheme without a driver -> the drivers SQLAlchemy could use for it, preferred first
DEFAULTS: dict[str, list[str]] = {
    "postgresql": ["postgresql+psycopg", "postgresql+psycopg2", "postgresql+pg8000"],
    "postgres": ["postgresql+psycopg", "postgresql+psycopg2", "postgresql+pg8000"],
    "mysql": ["mysql+mysqldb", "mysql+pymysql"],
    "mssql": ["mssql+pyodbc"],
}
NAMES = {"postgresql": "PostgreSQL", "postgres": "PostgreSQL", "mysql": "MySQL",
         "mssql": "SQL Server"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_driver(url: str) -> str | None:
    """None when `url` can be opened; else "the PostgreSQL driver is missing: pip install ..."."""
    scheme = url.partition("://")[0].lower()
    if scheme in DEFAULTS:
        if any(_installed(DRIVERS[d][0]) for d in DEFAULTS[scheme]):
            return None
        package = DRIVERS[DEFAULTS[scheme][0]][1]
    elif scheme in DRIVERS:
        module, package = DRIVERS[scheme]
        if _installed(module):
            return None
    else:
        return None
    name = NAMES.get(scheme.partition("+")[0], scheme)
    extra = " (or the postgres extra)" if name == "PostgreSQL" else ""
    return f"the {name} driver is missing: pip install '{package}'{extra}"


def with_driver(url: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg://...` (the installed driver); others as given."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in DEFAULTS:
        return url
    for candidate in DEFAULTS[scheme.lower()]:
        if _installed(DRIVERS[candidate][0]):
            return f"{candidate}://{rest}"
    return url


def checked_db_url(url: str, key: str) -> str:
    """`url` with its driver pinned; a config error naming the package when it is missing."""
    problem = missing_driver(url)
    if problem:
        allowed = f"a database URL whose driver is installed; {problem}"
        raise config_error(key, mask_url(url), allowed)
    return with_driver(url)
