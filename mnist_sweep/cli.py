"""The `mnist-sweep` command: a thin Hydra entry point.

The config is checked, then the backend and its thread pools are set from it, before anything
imports Keras: which is why the experiment module is imported inside the task function.
`--version` and config errors are answered here, around Hydra: a version line of our packages
instead of Hydra's, and a config error as one line (the whole trace in `last_error.log`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from hydra_plugins.optuna_mlflow_sweeper import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper import tracking as sweep_tracking
from hydra_plugins.optuna_mlflow_sweeper import trial as sweep_trial
from hydra_plugins.optuna_mlflow_sweeper._impl.faults import (
    LocalFault,
    Unreachable,
    one_line_faults,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.services import check_tracking
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from mnist_sweep import cli_help
from mnist_sweep.config import registry
from mnist_sweep.errors import DataUnavailableError, Rejected, one_line
from mnist_sweep.model import backend
from mnist_sweep.reports import studies

log = logging.getLogger(__name__)
registry.register()
cli_help.register()
STOP_GRACE_S = 60.0  # for a single run's epoch to end after SIGTERM (a sweep's: its own setting)
CONFIG_ERRORS = (ConfigCompositionException, OmegaConfBaseException, SweeperConfigError)


def main() -> None:
    """`mnist-sweep`: Hydra's command line, with our --version and one-line errors."""
    if "--version" in sys.argv[1:]:
        print(cli_help.versions())
        return
    try:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's own traces
            app()
        else:
            _one_line_errors()
    finally:
        # The heap is left to the exit as it is: Python's last garbage collections over
        # TensorFlow's, Keras' and MLflow's objects took 3-5 s of a short sweep's end, after its
        # last line. Frozen objects are skipped by them; atexit handlers and cleanup still run.
        gc.freeze()


def _one_line_errors() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them
    try:
        app()
    except Rejected as rejected:  # by registry.CheckFirst, before Hydra made the run's folder
        _fail(rejected.__cause__ or rejected)
    except Exception as exc:
        _fail(exc)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


def _fail(exc: BaseException) -> None:
    """One line on stderr (the whole trace in `last_error.log`); exit 2 for a config error."""
    trace = studies.index_path().with_name("last_error.log")
    trace.parent.mkdir(parents=True, exist_ok=True)
    trace.write_text("".join(traceback.format_exception(exc)))
    print(f"mnist-sweep: error: {one_line(exc)}  [trace: {trace}]", file=sys.stderr)
    sys.exit(2 if isinstance(exc, CONFIG_ERRORS) else 1)


@hydra.main(version_base="1.3", config_path=registry.CONFIG_PATH, config_name=registry.CONFIG_NAME)
def app(cfg: DictConfig) -> float | list[float]:
    try:
        registry.validate(cfg)  # a sweep's trial, its own values (registry.CheckFirst: the rest)
        # a wrong address or password: one line now, not minutes of retries (a sweep's trial
        # skips it: the sweep checked)
        uri = sweep_tracking.resolve_tracking_uri(cfg.tracking.uri)
        check_tracking(uri, "tracking.uri")
        backend.configure(cfg.train)  # backend and thread pools, before Keras starts
        from mnist_sweep.experiment import run

        with one_line_faults([("MLflow store", uri)]), _stops_on_sigterm(cfg):
            return run(cfg)
    except sweep_trial.Terminated as stop:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial to run again first
        notes = "; ".join(getattr(stop, "__notes__", []))
        log.info("stopped by SIGTERM: %s", notes)  # the run's log file
        print(f"mnist-sweep: stopped (SIGTERM): {notes}", file=sys.stderr)
        sys.exit(sweep_trial.EXIT_TERMINATED)
    except (SweeperConfigError, DataUnavailableError, Unreachable,
            LocalFault) as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed and goes on
        # stderr, not the logger: Hydra routes log records to stdout and the run's log file
        print(f"mnist-sweep: error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, SweeperConfigError) else 1)


def _stops_on_sigterm(cfg: DictConfig) -> contextlib.AbstractContextManager[None]:
    """SIGTERM to a single run, as to a sweep's trial: the epoch in progress ends and is
    checkpointed (at most STOP_GRACE_S), the run stops (KILLED in MLflow), exit 143, one line.
    Without checkpoints there is nothing to wait for: it stops at once. A sweep's trials: the
    sweeper's own handling (hydra.sweeper.stop_grace_period)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return contextlib.nullcontext()
    return sweep_trial.sigterm_stops_after_epoch(
        STOP_GRACE_S if cfg.train.checkpoint.enabled else 0.0)


if __name__ == "__main__":
    main()
