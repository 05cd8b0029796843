"""Settings that run but cannot do what they say: one warning line each, printed once by the
command a user typed (pure: sampler and pruner configs and the budget in, lines out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra_plugins.optuna_mlflow_sweeper._impl.html_report import IMPORTANCE_MIN_TRIALS
from hydra_plugins.optuna_mlflow_sweeper._impl.overrides import plain


def setting_warnings(sampler: Any, pruner: Any, n_trials: float) -> list[str]:
    """What the sampler, pruner and report will not do with this budget (pure: configs in,
    lines out). `n_trials` counts every trial of the study, enqueued ones included: they are
    finished trials to a sampler's start-up and to a pruner's rungs alike."""
    if n_trials == float("inf"):
        return []
    lines = [sampler_warning(plain(sampler), n_trials), pruner_warning(plain(pruner), n_trials),
             importance_warning(n_trials)]
    return [line for line in lines if line]


def sampler_warning(cfg: Mapping[str, Any] | None, n_trials: float) -> str | None:
    """A model-based sampler (TPE, GP, CMA-ES) draws at random until `n_startup_trials` trials
    have finished: a budget no larger than that never uses the model."""
    startup = (cfg or {}).get("n_startup_trials")
    if not isinstance(startup, int) or startup < n_trials:
        return None
    name = _short(cfg, "TPESampler")
    return (f"hydra.sweeper.sampler.n_startup_trials={startup} >= hydra.sweeper.n_trials="
            f"{n_trials:g}: {name} is never used, every trial is enqueued or a random draw "
            f"(set n_startup_trials below n_trials, or use hydra/sweeper/sampler=random)")


def pruner_warning(cfg: Mapping[str, Any] | None, n_trials: float) -> str | None:
    """A pruner judges a trial only against enough others at the same step: Median/Percentile
    after `n_startup_trials` finished trials, SuccessiveHalving with `reduction_factor` trials
    at its first rung (fewer: only the best so far survives), Hyperband so in each bracket."""
    cfg = cfg or {}
    name = _short(cfg, "")
    if name in ("MedianPruner", "PercentilePruner"):
        needed = int(cfg.get("n_startup_trials", 5)) + 1
        if n_trials < needed:
            return (f"hydra.sweeper.pruner: {name} waits for n_startup_trials="
                    f"{needed - 1} finished trials, so with hydra.sweeper.n_trials={n_trials:g} "
                    "it never prunes")
    elif name in ("SuccessiveHalvingPruner", "HyperbandPruner"):
        factor = int(cfg.get("reduction_factor", 4 if name.startswith("Succ") else 3))
        bootstrap = int(cfg.get("bootstrap_count", 0))
        brackets = _hyperband_brackets(cfg) if name == "HyperbandPruner" else 1
        needed = brackets * max(factor, bootstrap + 1)
        if n_trials < needed:
            per = f" in each of its {brackets} brackets" if brackets > 1 else ""
            return (f"hydra.sweeper.pruner: {name} ranks its first rung among reduction_factor="
                    f"{factor} trials{per} ({needed} in all); with hydra.sweeper.n_trials="
                    f"{n_trials:g} it cannot rank them: it stops every trial that is not the "
                    "best so far at that rung")
    return None


def importance_warning(n_trials: float) -> str | None:
    if n_trials >= IMPORTANCE_MIN_TRIALS:
        return None
    return (f"hydra.sweeper.n_trials={n_trials:g}: the report's parameter importances need "
            f"{IMPORTANCE_MIN_TRIALS} finished trials; from fewer they would be noise and are "
            "left out")


def _hyperband_brackets(cfg: Mapping[str, Any]) -> int:
    """Optuna's floor(log_rf(max/min)) + 1; 1 while max_resource is "auto" (known only after
    the first trial)."""
    low, high = cfg.get("min_resource", 1), cfg.get("max_resource", "auto")
    factor = int(cfg.get("reduction_factor", 3))
    if type(low) is not int or type(high) is not int or low < 1 or high < low or factor < 2:
        return 1
    brackets = 1
    while low * factor ** brackets <= high:
        brackets += 1
    return brackets


def _short(cfg: Mapping[str, Any] | None, default: str) -> str:
    return str((cfg or {}).get("_target_") or default).rpartition(".")[2]
