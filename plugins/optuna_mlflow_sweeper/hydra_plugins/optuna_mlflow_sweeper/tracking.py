"""Where sweeps and runs are recorded, and how to look at them: one rule for the sweeper and apps.

    from hydra_plugins.optuna_mlflow_sweeper.tracking import resolve_tracking_uri, ui_links

    uri = resolve_tracking_uri(cfg.tracking.uri)   # $MLFLOW_TRACKING_URI, else config, else default
    links = ui_links(uri, experiment_id, run_id)
    if links["command"]:                           # a local store: the UI must be started first
        print("open the UI", links["command"])
    print(links["run"])

`ensure_experiment(client, name)` makes (or restores) an experiment; `mask_url(url)` hides a
URL's password.

The environment wins over the config so that one variable redirects a whole sweep: the sweeper,
every trial and any app run it launches record into the same store.

The functions are defined in `_impl/` and only re-exported here: Hydra's plugin scanner executes
this module a second time in every Hydra process, which would otherwise give its functions new
identities (and make them unpicklable for launchers such as joblib).
"""

from hydra_plugins.optuna_mlflow_sweeper._impl.tracking import (
    ensure_experiment,
    mask_url,
    resolve_tracking_uri,
    ui_links,
)

__all__ = ["ensure_experiment", "mask_url", "resolve_tracking_uri", "ui_links"]
