"""Hydra sweeper `optuna_mlflow`: Optuna (5.x) ask/tell sweeps tracked as MLflow parent/child runs.

Select it with `hydra/sweeper=optuna_mlflow` (Hydra finds it through
`hydra_plugins.optuna_mlflow_sweeper`). Modules:

- config.py        config schema + ConfigStore registration (sampler/pruner groups)
- search_space.py  override grammar -> Optuna distributions
- overrides.py     Python values -> override grammar text
- validation.py    / prepare.py  checks before the first trial, study + MLflow setup
- errors.py        config errors naming the key (printed by Hydra without a stack trace)
- study.py         storage, shared budget, enqueue, stale-trial heartbeats
- runs.py          MLflow parent/child runs
- jobs.py          a trial's job overrides and outcome
- core.py          the sweep loop
- results.py       optimization_results.yaml, plots, progress line
- trial.py         the trial-side API task code calls: current_trial(), report(), trial_heartbeat()

Nothing here imports TensorFlow/Keras, and importing the package is cheap (Hydra imports the
plugin in every process).
"""

from mnist_sweep.sweeper.trial import current_trial, in_sweep, report, trial_heartbeat

__all__ = ["current_trial", "in_sweep", "report", "trial_heartbeat"]
