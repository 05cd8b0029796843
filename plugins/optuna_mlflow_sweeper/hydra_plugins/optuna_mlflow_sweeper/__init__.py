"""Hydra sweeper `optuna_mlflow`: Optuna ask/tell sweeps, every trial an MLflow child run.

Select it with `hydra/sweeper=optuna_mlflow`. Public modules:

- trial.py       what task code calls: report(value, step), current_trial(), in_sweep(),
                 trial_heartbeat(), stop_requested(), stop_now(), sigterm_stops_after_epoch()
                 (re-exported here), record_checkpoint(), recorded_checkpoint()
- tracking.py    resolve_tracking_uri(), ui_links(): where runs are recorded, how to look at them
- results.py     write_study_plots(): a finished study's report figures as PNG files
- config.py      the config schema (ConfigStore: hydra/sweeper, .../sampler, .../pruner)
- SweeperConfigError (here): a bad value named by its key; apps may raise their own subclass

The implementation is in `_impl/`, a directory without `__init__.py`: Hydra's plugin scanner
imports every module it can walk to under `hydra_plugins` in every Hydra process, and does not
walk into a namespace directory. So nothing here imports Optuna, MLflow or matplotlib until a
sweep runs.
"""

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper.trial import (
    EXIT_TERMINATED,
    Terminated,
    current_trial,
    in_sweep,
    report,
    sigterm_stops_after_epoch,
    stop_now,
    stop_requested,
    trial_heartbeat,
)

__version__ = "0.1.0"
__all__ = ["EXIT_TERMINATED", "SweeperConfigError", "Terminated", "current_trial", "in_sweep",
           "report", "sigterm_stops_after_epoch", "stop_now", "stop_requested", "trial_heartbeat"]
