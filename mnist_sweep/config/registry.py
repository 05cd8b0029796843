"""Where the configs live, how they are registered, the one check of a composed config, and the
flat view of a config that MLflow params need.

The YAML files sit at the top of the repository (`conf/`, `sweeps/`) and ship inside the package
as `mnist_sweep.conf` and `mnist_sweep.sweeps` (pyproject maps them), so a checkout and an
installed wheel find them the same way: through the import system, never a path on disk.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.config import schema
from mnist_sweep.errors import ConfigError, Rejected

CONF_PACKAGE = "mnist_sweep.conf"
SWEEPS_PACKAGE = "mnist_sweep.sweeps"
CONFIG_PATH = f"pkg://{CONF_PACKAGE}"  # for @hydra.main and hydra.initialize_config_module
CONFIG_NAME = "config"

RUN_METRICS = (
    "val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_time_s", "epoch_time_s_mean",
    "n_params",
)


@functools.cache
def register() -> None:
    """Group schemas, and the ready-made sweeps as the `sweep` group (once per process).

    The sweeps are stored in Hydra's ConfigStore rather than found as files: they live outside
    `conf/` in the repository, and an editable install cannot show them inside it.
    """
    schema.register()
    cs = ConfigStore.instance()
    for name in sweep_names():
        node = OmegaConf.load(resources.files(SWEEPS_PACKAGE) / f"{name}.yaml")
        cs.store(group="sweep", name=name, node=node, package="_global_", provider="mnist-sweep")


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The app's config as `mnist-sweep` composes it (packaged configs, schemas, sweeps), for
    code that needs one outside a Hydra run: reference runs, benchmarks, tests."""
    register()
    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


def sweep_names() -> list[str]:
    """The ready-made sweeps (`sweeps/*.yaml`) by name."""
    files = resources.files(SWEEPS_PACKAGE).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def validate(cfg: Mapping[str, Any]) -> None:
    """The rules types cannot say, once, before the backend starts or anything is recorded."""
    for section, node in schema.SCHEMAS.items():
        schema.check_keys(section, cfg[section], node)
    for section, check in schema.CHECKS.items():
        check(cfg[section])
    objectives = cfg.get("objectives")
    allowed = allowed_objectives(cfg)
    if not objectives or any(o not in allowed for o in objectives):
        raise ConfigError("objectives", objectives, allowed)


class CheckFirst(Callback):
    """Hydra callback (conf/config.yaml): `validate` on the config Hydra composed, before Hydra
    creates the run's folder (`outputs/DATE/TIME`, `multirun/DATE/TIME`) or a sweeper starts.
    A sweep's trials are checked again with their own values, in the task (`cli.app`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config)


def _check(config: DictConfig) -> None:
    try:
        validate(config)
    except ConfigError as exc:
        raise Rejected() from exc


def allowed_objectives(cfg: Mapping[str, Any]) -> list[str]:
    from mnist_sweep.data.noise import noise_metric_name

    levels = cfg["eval"]["noise_levels"]
    noise = [noise_metric_name(float(f), split) for split in ("val", "test") for f in levels]
    means = ["val_accuracy_noise_mean", "test_accuracy_noise_mean"] if levels else []
    return [*RUN_METRICS, *noise, *means]


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return container


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"model": {"hidden": [{"units": 16}]}}` -> `{"model.hidden.0.units": 16}`."""
    if isinstance(tree, Mapping):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not flat and prefix:
        flat[prefix] = "[]" if isinstance(tree, list) else "{}"
    return flat
