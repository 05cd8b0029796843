"""Hydra discovers the `optuna_mlflow` sweeper here; the implementation is `mnist_sweep.sweeper`."""
