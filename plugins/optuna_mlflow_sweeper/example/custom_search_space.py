"""A conditional search space: z's range depends on the x sampled for the same trial.

    python example/custom_search_space.py -m

`hydra.sweeper.custom_search_space: custom_search_space.configure` names a function
`(cfg, trial)` that suggests more params with Optuna's own API. Each param it suggests becomes an
override of the same name (`+w` adds a key the config lacks). It may instead return a dict of
{override key: value} (lists and dicts allowed), e.g. a whole list of layers.
"""

import hydra
from omegaconf import DictConfig
from optuna.trial import Trial


@hydra.main(version_base=None, config_path="custom-search-space", config_name="config")
def multi_dimensional_sphere(cfg: DictConfig) -> float:
    return cfg.w**2 + cfg.x**2 + cfg.y**2 + cfg.z**2


def configure(cfg: DictConfig, trial: Trial) -> None:
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # `+w`: w is not in the config, the override adds it


if __name__ == "__main__":
    multi_dimensional_sphere()
