"""Per-epoch checkpoints: a trial killed mid-training resumes, when retried, after its last one.

A checkpoint holds what makes the resumed epochs the uninterrupted run's own: every model
variable (weights, batch-norm statistics, and the seed generators' states that drive dropout,
augmentation and training noise), the optimizer's variables (its moments, and its step count,
from which a learning-rate schedule is computed), the NumPy and Python RNG states, early
stopping's and the plateau cut's counters with the best weights so far, and every epoch's
metrics (replayed to MLflow and Optuna, so a resumed trial's curves and reports are whole). The
order TensorFlow shuffles the digits in needs nothing: with a seed, `fit` reseeds it and the
shuffle is drawn from that seed alone, the same in every epoch (measured; Keras 3.15).

One file per run, on a local disk or object storage (checkpoint_store.py: how a kill at any
moment leaves the previous checkpoint whole). A trial records its checkpoint's location in the
study before the first one is written, and its retries resume from there, whatever folder or
machine they run in; it is removed when the trial ends any way but interrupted (complete,
pruned, failed): only a retry needs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra_plugins.optuna_mlflow_sweeper import current_trial
from hydra_plugins.optuna_mlflow_sweeper import trial as sweep_trial
from hydra_plugins.optuna_mlflow_sweeper.tracking import mask_url
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.model.checkpoint_store import Saved, Store, absolute

log = logging.getLogger(__name__)

MASK = "***"  # what mask_url puts for a password
# the counters of the stateful callbacks `training.fit` may use (their best weights apart)
CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}

def for_run(cfg: DictConfig) -> Store | None:
    """Where this run checkpoints (None: it does not), by `train.checkpoint`.

    A sweep's trial: `<dir>/<study>/trial-<k>`, k its number, the location recorded with the
    trial before its first checkpoint; a retry resumes from the location its first try recorded
    (the study hands it down), whatever folder or machine it runs in. A trial with nothing to
    resume starts fresh, so whatever is at its location is stale and removed. A single run:
    `<dir>/run-<config hash>`, so running the same command again resumes it.
    """
    settings = cfg.train.checkpoint
    trial = current_trial()
    if not (settings.enabled if settings.enabled is not None else trial is not None):
        return None
    digest = fingerprint(cfg)
    base = base_location(cfg).rstrip("/")
    if trial is None:
        return Store(f"{base}/run-{digest[:12]}", settings.every, digest)
    recorded = _unmasked(sweep_trial.recorded_checkpoint(), base)
    if recorded is not None:
        return Store(recorded, settings.every, digest)
    store = Store(f"{base}/{trial.study.study_name}/trial-{trial.number}", settings.every,
                  digest, before_first_save=sweep_trial.record_checkpoint)
    store.remove()
    return store


def base_location(cfg: DictConfig) -> str:
    """The folder (path or URL) new checkpoints go under: `train.checkpoint.dir`, else a sweep's
    `<hydra.sweep.dir>/checkpoints`, else `./checkpoints` (plain paths made absolute)."""
    configured = cfg.train.checkpoint.dir
    if configured:
        return absolute(str(configured))
    if current_trial() is None:
        return absolute("checkpoints")
    sweep_dir = HydraConfig.get().sweep.dir if HydraConfig.initialized() else "."
    return absolute(f"{sweep_dir}/checkpoints")


def _unmasked(recorded: str | None, base: str) -> str | None:
    """The recorded location, with the password recorded as `***` taken back from this run's
    own `train.checkpoint.dir` when it lies there; None when it cannot be used (another one)."""
    if recorded is None or MASK not in recorded:
        return recorded
    masked_base = mask_url(base)
    if masked_base != base and recorded.startswith(masked_base):
        return base + recorded[len(masked_base):]
    log.warning("the checkpoint recorded for this trial (%s) is at a location whose password "
                "this run does not have: training from the first epoch", recorded)
    return None


def fingerprint(cfg: DictConfig) -> str:
    """A hash of what a run trains (model, data, training but its checkpoint settings)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    train = {k: v for k, v in tree["train"].items() if k != "checkpoint"}
    text = json.dumps({"model": tree["model"], "data": tree["data"], "train": train},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def kept_for_retry(store: Store | None) -> Iterator[None]:
    """Remove the run's checkpoint when it ends, unless interrupted (KeyboardInterrupt, which
    a SIGTERM's stop is too, SystemExit): completed, pruned or failed, a trial is never
    retried."""
    try:
        yield
    except Exception:
        if store is not None:
            store.remove()
        raise
    except KeyboardInterrupt as stop:  # what was kept, for the line that says the run stopped
        saved = store.load() if store is not None else None
        stop.add_note(f"epochs 1-{saved.epoch} saved in {store.shown}: the same command resumes "
                      "the run after them" if saved and store else
                      "no checkpoint to resume from (train.checkpoint.enabled=true keeps one)")
        raise
    if store is not None:
        store.remove()


def restore(model: Any, saved: Saved) -> bool:
    """Load a checkpoint's model and optimizer variables into a compiled `model`; False (and
    nothing changed) when they are not this model's, variable for variable (by shape: names
    differ between models of one process, which Keras numbers)."""
    model.optimizer.build(model.trainable_variables)
    pairs = {"model": model.variables, "optimizer": model.optimizer.variables}
    for name, variables in pairs.items():
        try:  # what the meta says, and what the arrays are: a file may be edited or mixed up
            fits = saved.meta["shapes"].get(name) == _shapes(variables) == [
                list(a.shape) for a in saved.group(name)]
        except (KeyError, TypeError, AttributeError):
            fits = False
        if not fits:
            log.warning("checkpoint does not fit this model (%s variables differ): training "
                        "from the first epoch", name)
            return False
    for name, variables in pairs.items():
        for variable, value in zip(variables, saved.group(name), strict=True):
            variable.assign(value)
    return True


class Checkpointer(keras.callbacks.Callback):
    """Saves the training state every `store.every` epochs; on a resumed run, first gives the
    stateful callbacks and the RNGs back their saved state.

    Last among `fit`'s callbacks: it restores after the others reset themselves at the start, and
    saves what they made of the epoch. `hook` (training._EpochHook) keeps the epochs' metrics
    and the time spent outside training (MLflow, Optuna).
    """

    def __init__(self, store: Store, hook: Any, stateful: Sequence[Any],
                 resume: Saved | None = None) -> None:
        super().__init__()
        self.store, self.hook, self.stateful, self.resume = store, hook, list(stateful), resume
        self.train_time_s = resume.meta["train_time_s"] if resume else 0.0  # epochs saved before
        self.save_time_s = 0.0
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        if self.resume is not None:
            _restore_callbacks(self.stateful, self.resume)
            _restore_rngs(self.resume)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # asked to stop (SIGTERM): saved whatever `every` says; training.fit then stops
        if sweep_trial.stop_requested() or (epoch + 1) % self.store.every == 0:
            start = time.perf_counter()
            self.store.save(*self._capture())
            self.save_time_s += time.perf_counter() - start

    def _capture(self) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        model = self.model
        elapsed = time.perf_counter() - self._start - self.save_time_s - self.hook.hook_time_s
        numpy_rng = np.random.get_state()
        meta: dict[str, Any] = {
            "rows": self.hook.rows, "train_time_s": self.train_time_s + elapsed,
            "stopped": bool(model.stop_training),
            "shapes": {"model": _shapes(model.variables),
                       "optimizer": _shapes(model.optimizer.variables)},
            "callbacks": {type(cb).__name__: {k: _plain(getattr(cb, k)) for k in
                                              CALLBACK_STATE[type(cb).__name__]}
                          for cb in self.stateful},
            "rng": {"python": random.getstate(), "numpy": [_plain(v) for v in numpy_rng[2:]]},
        }
        groups: dict[str, list[Any]] = {
            "model": [v.numpy() for v in model.variables],
            "optimizer": [v.numpy() for v in model.optimizer.variables],
            "numpy_rng": [numpy_rng[1]],
        }
        for cb in self.stateful:
            if getattr(cb, "best_weights", None) is not None:
                groups["best_weights"] = cb.best_weights
        return meta, groups


def _restore_callbacks(stateful: Sequence[Any], saved: Saved) -> None:
    for cb in stateful:
        for key, value in saved.meta["callbacks"].get(type(cb).__name__, {}).items():
            setattr(cb, key, value)
        if hasattr(cb, "best_weights") and saved.group("best_weights"):
            cb.best_weights = saved.group("best_weights")


def _restore_rngs(saved: Saved) -> None:
    version, state, gauss = saved.meta["rng"]["python"]
    random.setstate((version, tuple(state), gauss))
    [keys] = saved.group("numpy_rng")
    np.random.set_state(("MT19937", keys, *saved.meta["rng"]["numpy"]))


def _shapes(variables: Sequence[Any]) -> list[list[int]]:
    return [list(v.shape) for v in variables]


def _plain(value: Any) -> Any:
    """A JSON-able copy of a NumPy scalar (callbacks keep their best value as one)."""
    return value.item() if isinstance(value, np.generic) else value
