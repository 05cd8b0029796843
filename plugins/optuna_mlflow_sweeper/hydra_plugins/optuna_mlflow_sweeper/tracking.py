"""Where sweeps and runs are recorded, and how to look at them: one rule for the sweeper and apps.

    from hydra_plugins.optuna_mlflow_sweeper.tracking import resolve_tracking_uri, ui_links

    uri = resolve_tracking_uri(cfg.tracking.uri)   # $MLFLOW_TRACKING_URI, else config, else default
    links = ui_links(uri, experiment_id, run_id)
    if links["command"]:                           # a local store: the UI must be started first
        print("open the UI", links["command"])
    print(links["run"])

Apps record through the same safety nets as the sweeper: `mlflow_outbox(client, spool_dir)` (an
`Outbox` of ordered MLflow writes that wait out a server outage, spooled when undeliverable, the
one the sweeper's runs use), `retry_call` (a call that needs its answer, retried with backoff for
`patience()` seconds), `redact(text, known_secrets())` (passwords out of anything recorded, e.g.
a command line), `check_tracking(uri, key)` (a wrong address or password is one line at once,
`Unreachable`, not an outage) and `one_line_faults(stores)` (a full disk is one line,
`LocalFault`, not an outage).

The environment wins over the config so that one variable redirects a whole sweep: the sweeper,
every trial and any app run it launches record into the same store.

The functions are defined in `_impl/` and only re-exported here: Hydra's plugin scanner executes
this module a second time in every Hydra process, which would otherwise give its functions new
identities (and make them unpicklable for launchers such as joblib).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    DEFAULT_URI,
    TRAINING_VIEW,
    ensure_experiment,
    mask_url,
    resolve_tracking_uri,
    ui_links,
)

if TYPE_CHECKING:
    from hydra_plugins.optuna_mlflow_sweeper._impl.faults import (
        LocalFault,
        Unreachable,
        one_line_faults,
    )
    from hydra_plugins.optuna_mlflow_sweeper._impl.locks import create_store
    from hydra_plugins.optuna_mlflow_sweeper._impl.outbox import Outbox
    from hydra_plugins.optuna_mlflow_sweeper._impl.plan import check_tracking
    from hydra_plugins.optuna_mlflow_sweeper._impl.retry import patience, retry_call
    from hydra_plugins.optuna_mlflow_sweeper._impl.run_writes import mlflow_outbox
    from hydra_plugins.optuna_mlflow_sweeper._impl.secrets import known_secrets, redact

# imported on first use: Hydra's scanner imports this module in every process
_LAZY = {"Outbox": "outbox", "mlflow_outbox": "run_writes", "patience": "retry",
         "retry_call": "retry", "known_secrets": "secrets", "redact": "secrets",
         "check_tracking": "plan", "LocalFault": "faults", "Unreachable": "faults",
         "one_line_faults": "faults", "create_store": "locks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"hydra_plugins.optuna_mlflow_sweeper._impl.{_LAZY[name]}"),
                       name)
    raise AttributeError(name)


__all__ = ["DEFAULT_URI", "TRAINING_VIEW", "LocalFault", "Outbox", "Unreachable",
           "check_tracking", "create_store", "ensure_experiment", "known_secrets", "mask_url",
           "mlflow_outbox", "one_line_faults", "patience", "redact", "resolve_tracking_uri",
           "retry_call", "ui_links"]
