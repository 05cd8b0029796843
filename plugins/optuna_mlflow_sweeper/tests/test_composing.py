"""One trial composed into the toy app's config and checked by the app, as `plan` does before
anything exists: a table of search spaces and app checks, and the key each refusal names (no
sweep, no store; the refusals in a real command are in the app's test_fail_fast)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from toyapp import APP

from hydra_plugins.optuna_mlflow_sweeper._impl.composing import check_composes
from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import build_search_space


def x_at_most_3(cfg: DictConfig) -> None:
    if cfg.x > 3:
        raise ValueError(f"x must be <= 3, not {cfg.x}")


def refuses_all(cfg: DictConfig) -> None:
    raise ValueError("no config is good")


def layers(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    return {"model.hidden": [{"units": trial.suggest_int("units", 4, 8)}]}


def missing_key(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    return {"model.nokey": trial.suggest_int("n", 1, 2)}


@pytest.fixture
def check() -> Iterator[Callable[..., None]]:
    """check(arguments, custom, app_check): check_composes on the toy app's config."""
    with initialize_config_dir(config_dir=str(APP.parent / "conf"), version_base=None):
        config = compose("config", ["hydra/sweeper=optuna_mlflow"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()

        def run(arguments: list[str], custom: Any, app_check: Any) -> None:
            space = build_search_space({}, arguments)
            check_composes(config, loader, space, custom, "tests.custom" if custom else None,
                           app_check, "tests.validate" if app_check else None)

        yield run


@pytest.mark.parametrize(("arguments", "custom", "app_check", "refused"), [
    (["x=interval(-5,5)", "y=1.5"], None, None, None),
    (["x=interval(-2,3)"], None, x_at_most_3, None),  # every end accepted
    (["x=interval(-5,5)"], None, x_at_most_3, "x (command-line override)"),  # at x=5
    (["x=choice(1,2,4)"], None, x_at_most_3, "x (command-line override)"),  # the choice 4
    (["x=interval(-5,5)"], None, refuses_all, "hydra.sweeper.validate"),  # the trial itself
    (["nokey=interval(0,1)"], None, None, "nokey (command-line override)"),
    (["y=1.5"], layers, None, None),
    (["y=1.5"], missing_key, None, "hydra.sweeper.custom_search_space"),
])
def test_a_trial_composes_and_the_app_accepts_each_end(
    check: Callable[..., None], arguments: list[str], custom: Any, app_check: Any,
    refused: str | None,
) -> None:
    if refused is None:
        check(arguments, custom, app_check)
        return
    with pytest.raises(SweeperConfigError) as error:
        check(arguments, custom, app_check)
    assert f"'{refused}'" in str(error.value)
