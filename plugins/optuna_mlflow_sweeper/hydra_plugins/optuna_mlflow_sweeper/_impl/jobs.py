"""One trial as a Hydra job: its overrides going in, its outcome coming back."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, ListConfig
from optuna.trial import TrialState

from hydra_plugins.optuna_mlflow_sweeper._impl.env import (
    ENV_HEARTBEAT,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL_ID,
    ENV_TRIAL_NUMBER,
)
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import env_override, override, plain
from hydra_plugins.optuna_mlflow_sweeper._impl.search_space import SearchSpace
from hydra_plugins.optuna_mlflow_sweeper._impl.study import asked_system_attrs

DIVERGED = "diverged (non-finite objective)"


class ComposedOnce:
    """The app's config loader, handing a job's config composed early to the launcher.

    A worker composes each trial's config before launching it, so that bad overrides fail the
    trial with their reason; the launcher then composes the same overrides again, and composing is
    most of what a job costs Hydra (~40% of a trivial trial). `compose` keeps the config it made;
    the launcher's next `load_sweep_config` with the same overrides takes it (once: the launcher
    changes it), any other call composes as usual. Everything else is the wrapped loader's.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self._kept: tuple[Any, list[str], DictConfig] | None = None

    @classmethod
    def around(cls, loader: Any) -> ComposedOnce:
        return loader if isinstance(loader, cls) else cls(loader)

    def compose(self, master_config: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """The job's config, kept for the launcher; raises what composing raises."""
        self._kept = None
        config = self.loader.load_sweep_config(master_config, list(overrides))
        self._kept = (master_config, list(overrides), config)
        return config

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]
                          ) -> DictConfig:
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is master_config and kept[1] == list(sweep_overrides):
            return kept[2]
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "_kept"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"loader": self.loader, "_kept": None}  # a job's config stays in its process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def trial_overrides(
    trial: optuna.Trial,
    space: SearchSpace,
    custom: Callable[[DictConfig, optuna.Trial], Any] | None,
    cfg: DictConfig,
) -> list[str]:
    """Fixed overrides + sampled params + custom search space + extra enqueued overrides.

    `trial` was asked with `space.distributions`, so those params are already sampled.
    Custom search space: every param it suggests becomes an override like in Hydra's sweeper;
    when it returns a dict, params that name no config key are internal (e.g. n_layers) and only
    the dict's {override_key: value} items describe the config.
    """
    lines = list(space.fixed.values())
    lines += [space.override_for(name, trial.params[name]) for name in space.distributions]
    if custom is not None:
        before = set(trial.params)
        returned = custom(cfg, trial)
        suggested = [n for n in trial.params if n not in before]
        if returned is None:
            lines += [override(n, trial.params[n]) for n in suggested]
        else:
            if not isinstance(returned, Mapping):
                raise TypeError(
                    f"custom_search_space must return a dict or None, got {type(returned).__name__}"
                )
            lines += [override(n, trial.params[n]) for n in suggested
                      if n.startswith("+") or has_key(cfg, n)]
            lines += [override(str(k), v) for k, v in plain(returned).items()]
    # enqueued values for keys no distribution covers are passed as plain overrides
    fixed = asked_system_attrs(trial).get("fixed_params", {})
    lines += [override(k, v) for k, v in fixed.items() if k not in trial.params]
    return lines


def has_key(cfg: DictConfig, dotted: str) -> bool:
    """Whether a dotted key (list indices allowed) names a node of the config."""
    node: Any = cfg
    for part in dotted.lstrip("+~").split("."):
        if isinstance(node, DictConfig) and part in node.keys():  # `in node` is False for ???
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return False
    return True


def env_overrides(
    storage_url: str, study_name: str, trial: optuna.Trial, heartbeat: int | None,
    mlflow_env: Mapping[str, str] | None, exclude: Mapping[str, str] | None = None,
) -> list[str]:
    """The trial context for the job process, as one `++hydra.job.env_set={...}` override."""
    env = {
        ENV_STORAGE: storage_url,
        ENV_STUDY: study_name,
        ENV_TRIAL_ID: str(trial._trial_id),
        ENV_TRIAL_NUMBER: str(trial.number),
        **(mlflow_env or {}),
    }
    if heartbeat:
        env[ENV_HEARTBEAT] = str(heartbeat)
    return [env_override({k: v for k, v in env.items() if k not in (exclude or {})})]


def outcome(ret: JobReturn, n_objectives: int) -> tuple[TrialState, list[float] | None, str | None]:
    """(state, values, fail reason) of a finished job, read without re-raising its exception."""
    value = ret._return_value
    if ret.status == JobStatus.FAILED or isinstance(value, BaseException):
        if isinstance(value, optuna.TrialPruned):
            return TrialState.PRUNED, None, None
        return TrialState.FAIL, None, _describe(value)
    try:
        values = to_values(value, n_objectives)
    except (TypeError, ValueError) as e:
        return TrialState.FAIL, None, f"invalid return value: {e}"
    if not all(math.isfinite(v) for v in values):
        return TrialState.FAIL, None, DIVERGED
    return TrialState.COMPLETE, values, None


def to_values(value: Any, n_objectives: int) -> list[float]:
    value = plain(value)
    if n_objectives == 1:
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 1:
            value = value[0]
        try:
            return [float(value)]
        except (TypeError, ValueError):
            raise ValueError(f"expected a float, got {value!r}") from None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"expected {n_objectives} floats, got {value!r}")
    values = [float(v) for v in value]
    if len(values) != n_objectives:
        raise ValueError(f"expected {n_objectives} floats, got {len(values)}: {values}")
    return values


def _describe(error: Any) -> str:
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}".strip()
        return text.rstrip(":")
    return f"job failed: {error!r}"
