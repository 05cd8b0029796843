"""Single objective with pruning: x² + y², estimated over `steps` iterations.

    python example/sphere.py -m            # 20 trials (conf/config.yaml), MLflow in ./mlflow.db
    python example/sphere.py -m 'x=interval(-2,2)' hydra.sweeper.n_trials=10

Each step reports its estimate with `report(value, step)`: the median pruner stops a trial whose
estimate is worse than the median of earlier trials at the same step (recorded as PRUNED in
Optuna, KILLED in MLflow). Outside a sweep `report` does nothing: `python example/sphere.py` runs
one plain job.
"""

import hydra
from omegaconf import DictConfig

from hydra_plugins.optuna_mlflow_sweeper import report


@hydra.main(version_base=None, config_path="conf", config_name="config")
def sphere(cfg: DictConfig) -> float:
    value = cfg.x**2 + cfg.y**2
    for step in range(cfg.steps):
        # an iterative method converging on the value from above, like a training loss
        report(value + (cfg.steps - step) / cfg.steps, step)
    return value


if __name__ == "__main__":
    sphere()
