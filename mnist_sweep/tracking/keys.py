"""The MLflow key of each metric a run logs: the chart view's sections, curves first.

MLflow's chart view groups metrics into sections by the prefix before `/`, prefixed sections in
alphabetical order, then the unprefixed ones ("Model metrics"). So the per-epoch learning curves
go under `curves/` (first), one-number results under sections of their own, out of the curves'
way. Only MLflow sees these keys: the app, its objectives, the Optuna trials and the results files
keep the plain names (`val_accuracy`, `test_accuracy`, `train_time_s`...). This is the one place
that maps them; whatever reads a run's metrics back from MLflow reads them through `mlflow_key`.

    per epoch:  accuracy, loss, val_accuracy, val_loss -> curves/<name>
                learning_rate -> curves/learning_rate_log10 (log10 of the rate, see _LOG10)
                epoch_time_s -> time/epoch_s
    whole run:  test_accuracy, test_loss -> test/accuracy, test/loss
                test_accuracy_class_<d> -> test_digit/accuracy_<d>
                test_accuracy_noise_<f>, val_accuracy_noise_<f> (and _mean)
                    -> test_noise/accuracy_<f>, val_noise/accuracy_<f>
                train_time_s, epoch_time_s_mean -> time/train_s, time/epoch_mean_s
                epoch_time_s_first, epoch_time_s_steady -> time/first_epoch_s, time/steady_epoch_s
                epochs_run, n_params -> run/epochs, run/n_params
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

CURVES = "curves/"
_FIXED = {
    "epoch_time_s": "time/epoch_s",
    "train_time_s": "time/train_s",
    "epoch_time_s_mean": "time/epoch_mean_s",
    "epoch_time_s_first": "time/first_epoch_s",
    "epoch_time_s_steady": "time/steady_epoch_s",
    "epochs_run": "run/epochs",
    "n_params": "run/n_params",
    "test_accuracy": "test/accuracy",
    "test_loss": "test/loss",
}
# (pattern, replacement) for the families of whole-run metrics
_FAMILIES = [
    (re.compile(r"^test_accuracy_class_(\w+)$"), r"test_digit/accuracy_\1"),
    (re.compile(r"^(test|val)_accuracy_noise_(.+)$"), r"\1_noise/accuracy_\2"),
]


# Per-epoch series charted as log10: a constant rate (no schedule) is a flat line that the chart
# view draws on a -0.5..0.5 axis labelled 0 whatever the rate (1e-3 reads as 0); as log10 it
# reads -3, and rates sampled log-uniformly spread evenly across the runs.
_LOG10 = {"learning_rate": "curves/learning_rate_log10"}


def mlflow_key(name: str, per_epoch: bool = False) -> str:
    """The key metric `name` is logged under in MLflow (`per_epoch`: one of the epoch's
    values, a learning curve unless a timing)."""
    if name in _FIXED:
        return _FIXED[name]
    if per_epoch and name in _LOG10:
        return _LOG10[name]
    for pattern, replacement in _FAMILIES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return CURVES + name if per_epoch else name


def mlflow_metrics(metrics: Mapping[str, float], per_epoch: bool = False) -> dict[str, float]:
    """`metrics` under their MLflow keys (a log10 series left out where its value is not > 0)."""
    out = {}
    for name, value in metrics.items():
        if per_epoch and name in _LOG10:
            if value > 0:
                out[_LOG10[name]] = math.log10(value)
            continue
        out[mlflow_key(name, per_epoch)] = float(value)
    return out
