"""Two objectives (Binh and Korn): the answer is a Pareto front, not one best trial.

    python example/multi_objective.py -m

NSGA-II samples x and y; each trial returns both values. optimization_results.yaml lists the
Pareto-optimal trials and the parent MLflow run's sweep_report.html draws the front.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="multi-objective-conf", config_name="config")
def binh_and_korn(cfg: DictConfig) -> tuple[float, float]:
    v0 = 4 * cfg.x**2 + 4 * cfg.y**2
    v1 = (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2
    return v0, v1


if __name__ == "__main__":
    binh_and_korn()
