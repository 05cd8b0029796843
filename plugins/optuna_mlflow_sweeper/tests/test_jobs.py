"""A trial's job config is composed once: the worker's check hands it to the launcher.

Against Hydra's real config loader and the toy app's config (no sweep, no subprocess); the sweeps
that launch through it are in test_worker.py.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from optuna.trial import TrialState
from toyapp import APP

from hydra_plugins.optuna_mlflow_sweeper._impl.jobs import DIVERGED, ComposedOnce, has_key, outcome


@pytest.fixture
def hydra() -> Iterator[tuple[Any, Any]]:
    """(Hydra's config loader, the app's master config) as a multirun sees them."""
    with initialize_config_dir(config_dir=str(APP.parent / "conf"), version_base=None):
        master = compose("config", return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), master


def test_the_launcher_takes_the_config_composed_for_its_job(hydra: tuple[Any, Any]) -> None:
    loader, master = hydra
    once = ComposedOnce.around(loader)
    assert ComposedOnce.around(once) is once  # a worker process wraps its payload's loader again
    composed = once.compose(master, ["x=1.5", "y=2"])
    assert (composed.x, composed.y) == (1.5, 2)
    assert once.load_sweep_config(master, ["x=1.5", "y=2"]) is composed
    again = once.load_sweep_config(master, ["x=1.5", "y=2"])  # taken once: composed anew
    assert again is not composed and again.x == 1.5


@pytest.mark.parametrize("asked", [["x=2.5", "y=2"], ["y=2", "x=1.5"], ["x=1.5"]])
def test_other_overrides_are_composed_as_asked(hydra: tuple[Any, Any], asked: list[str]) -> None:
    loader, master = hydra
    once = ComposedOnce(loader)
    kept = once.compose(master, ["x=1.5", "y=2"])
    got = once.load_sweep_config(master, asked)
    assert got is not kept
    assert got == loader.load_sweep_config(master, asked)


def test_a_bad_override_raises_and_keeps_nothing(hydra: tuple[Any, Any]) -> None:
    loader, master = hydra
    once = ComposedOnce(loader)
    once.compose(master, ["x=1.5"])
    with pytest.raises(ConfigCompositionException):
        once.compose(master, ["nope.key=1"])
    assert once.load_sweep_config(master, ["x=1.5"]).x == 1.5  # composed anew, not kept
    assert once._kept is None


def test_a_pickled_loader_leaves_the_kept_config_behind(hydra: tuple[Any, Any]) -> None:
    loader, master = hydra
    once = ComposedOnce(loader)
    once.compose(master, ["x=1.5"])
    copy = pickle.loads(pickle.dumps(once))
    assert copy._kept is None and isinstance(copy.loader, type(loader))
    assert copy.load_sweep_config(master, ["x=3"]).x == 3


def _ret(value: object, status: JobStatus) -> JobReturn:
    ret = JobReturn()
    ret._return_value = value
    ret.status = status
    return ret


def test_outcomes_of_jobs() -> None:
    assert outcome(_ret(0.5, JobStatus.COMPLETED), 1) == (TrialState.COMPLETE, [0.5], None)
    assert outcome(_ret([1, 2], JobStatus.COMPLETED), 2) == (TrialState.COMPLETE, [1.0, 2.0], None)
    assert outcome(_ret(math.nan, JobStatus.COMPLETED), 1) == (TrialState.FAIL, None, DIVERGED)
    assert outcome(_ret(math.inf, JobStatus.COMPLETED), 1)[2] == DIVERGED
    pruned = _ret(optuna.TrialPruned("pruned at step 2"), JobStatus.FAILED)
    assert outcome(pruned, 1) == (TrialState.PRUNED, None, None)
    failed = outcome(_ret(RuntimeError("boom"), JobStatus.FAILED), 1)
    assert failed == (TrialState.FAIL, None, "RuntimeError: boom")
    assert "invalid return value" in outcome(_ret("abc", JobStatus.COMPLETED), 1)[2]
    assert "expected 2 floats" in outcome(_ret(1.0, JobStatus.COMPLETED), 2)[2]


def test_has_key() -> None:
    cfg = OmegaConf.create({"model": {"hidden": [{"units": 1}], "lr": "???"}})
    assert has_key(cfg, "model.hidden.0.units") and has_key(cfg, "model.lr")
    assert not has_key(cfg, "model.nope") and not has_key(cfg, "model.hidden.1")
