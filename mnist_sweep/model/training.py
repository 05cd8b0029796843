"""Compile and fit one model, with per-epoch hooks for tracking and pruning.

Speed without changing the math: `steps_per_execution` runs many batches per Python call (the
notebook's per-step Python overhead, not arithmetic, dominates an epoch of a 12k-parameter net),
while the batches, their order and the updates stay exactly those of a plain `fit`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from hydra_plugins.optuna_mlflow_sweeper import trial as sweep_trial

from mnist_sweep.data.mnist import Splits
from mnist_sweep.errors import TrainingDiverged
from mnist_sweep.model import checkpoints as ckpt
from mnist_sweep.model.models import batch_rows

AUTO_STEPS_PER_EXECUTION = 128  # measured: 0.37 s/epoch for the dense net vs 0.39 at 64

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    train_time_s: float = 0.0
    weights_epoch: int = -1  # whose weights the model ends with (early stopping restores the best)
    resumed_from_epoch: int = 0  # epochs a checkpoint had done (0: trained from the start)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


def compile_model(model: Any, train: Mapping[str, Any], steps_per_epoch: int) -> None:
    optimizer = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[train["optimizer"]](learning_rate=learning_rate(train, steps_per_epoch))
    spe = train.get("steps_per_execution", "auto")
    if spe == "auto":
        spe = AUTO_STEPS_PER_EXECUTION
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
        metrics=["accuracy"],
        steps_per_execution=max(1, min(int(spe), steps_per_epoch)),
    )


def learning_rate(train: Mapping[str, Any], steps_per_epoch: int) -> Any:
    """`train.learning_rate`, or a Keras schedule of it stepped per batch (`train.lr_schedule`).

    Cosine decays over the whole epoch budget: a trial stopped early (pruned, early stopping)
    has run with the same rates as every other trial up to that epoch, so trials compare fairly
    at every step a pruner judges. reduce_on_plateau is a callback (`_schedule_callbacks`).
    """
    schedule = train.get("lr_schedule") or {}
    name, rate = schedule.get("name", "constant"), float(train["learning_rate"])
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=int(train["epochs"]) * steps_per_epoch,
            alpha=float(schedule.get("final_fraction", 0.0)),
        )
    if name == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            rate, decay_steps=steps_per_epoch, decay_rate=float(schedule.get("factor", 0.5)),
        )
    return rate


def _schedule_callbacks(train: Mapping[str, Any], validated: bool) -> list[Any]:
    schedule = train.get("lr_schedule") or {}
    if schedule.get("name") != "reduce_on_plateau":
        return []
    return [keras.callbacks.ReduceLROnPlateau(
        monitor="val_accuracy" if validated else "accuracy", mode="max",
        factor=float(schedule.get("factor", 0.5)), patience=int(schedule.get("patience", 1)),
    )]


def fit(
    model: Any,
    splits: Splits,
    train: Mapping[str, Any],
    *,
    on_epoch: EpochHook | None = None,
    verbose: int = 0,
    checkpoints: ckpt.Store | None = None,
) -> TrainResult:
    """Train `model` on `splits`; `on_epoch(step, logs)` sees each epoch's metrics and time, with
    step = epochs done (1, 2, ...): the one step convention of MLflow curves and Optuna reports.

    An exception from `on_epoch` (e.g. `optuna.TrialPruned`) stops training and propagates.
    With `checkpoints`, the training state is saved after epochs, and a saved state is resumed
    from: `on_epoch` sees its epochs again first (steps 1..k), then the ones trained.
    """
    if train.get("seed") is not None:
        keras.utils.set_random_seed(int(train["seed"]))
    steps_per_epoch = math.ceil(len(splits.x_train) / train["batch_size"])
    compile_model(model, train, steps_per_epoch)
    resume = checkpoints.load() if checkpoints is not None else None
    if resume is not None and not ckpt.restore(model, resume):
        resume = None
    for step, row in enumerate(resume.rows if resume else [], 1):
        if on_epoch is not None:
            on_epoch(step, dict(row))

    # No TerminateOnNaN: its per-batch check syncs every execution (~0.2 s an epoch of the dense
    # net); _EpochHook stops a diverged run at the end of the epoch instead.
    validation = (splits.x_val, splits.y_val) if len(splits.x_val) else None
    # The hook first: it sees each epoch before a plateau cut or early stopping acts on it, and
    # a pruner's TrialPruned raised from it ends training before they run.
    hook = _EpochHook(on_epoch, resume.rows if resume else ())
    callbacks: list[Any] = [hook, *_schedule_callbacks(train, bool(validation))]
    stopper = None
    if train.get("early_stopping_patience"):
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            patience=int(train["early_stopping_patience"]),
            restore_best_weights=True,
        )
        callbacks.append(stopper)
    saver = None
    if checkpoints is not None:
        stateful = [cb for cb in callbacks if type(cb).__name__ in ckpt.CALLBACK_STATE]
        saver = ckpt.Checkpointer(checkpoints, hook, stateful, resume)
        callbacks.append(saver)
    callbacks.append(_StopWhenAsked())  # last: after the epoch is reported and checkpointed
    start = time.perf_counter()
    model.fit(
        splits.x_train,
        splits.y_train,
        epochs=train["epochs"],
        initial_epoch=resume.initial_epoch(train["epochs"]) if resume else 0,
        batch_size=train["batch_size"],
        shuffle=bool(train.get("shuffle", True)),
        validation_data=validation,
        # measured, 5,000 digits, the 32->64 CNN: 0.74-1.19 s in its ~250-row batches, 1.09-1.34
        # s in 2,048-row ones; the dense net gets 2,048
        validation_batch_size=batch_rows(model, 2048),
        callbacks=callbacks,
        verbose=verbose,
    )
    result = TrainResult(
        history={k: [row[k] for row in hook.rows] for k in (hook.rows[0] if hook.rows else {})},
        # the hooks' time (MLflow, Optuna: waits on a server) is not training, nor checkpointing
        train_time_s=time.perf_counter() - start - hook.hook_time_s,
        resumed_from_epoch=resume.epoch if resume else 0,
    )
    if saver is not None:
        result.train_time_s += saver.train_time_s - saver.save_time_s
    result.weights_epoch = result.epochs_run - 1
    if stopper is not None and stopper.best_weights is not None:
        result.weights_epoch = stopper.best_epoch
    losses = result.history.get("loss", [])
    if not losses or not np.all(np.isfinite(losses)):
        raise TrainingDiverged(f"training loss became non-finite: {losses}")
    return result


class _StopWhenAsked(keras.callbacks.Callback):
    """A sweep asked to stop (a scheduler's SIGTERM): end at this epoch's end, after its
    checkpoint; the sweeper records the trial to run again first, from that checkpoint."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if sweep_trial.stop_requested():
            sweep_trial.stop_now()


class _EpochHook(keras.callbacks.Callback):
    """Times the training part of each epoch (validation excluded), reads the learning rate it
    starts with, keeps each epoch's metrics in `rows` (a resumed run's saved ones first), and
    forwards them."""

    def __init__(self, on_epoch: EpochHook | None, rows: Any = ()) -> None:
        super().__init__()
        self.on_epoch = on_epoch
        self.rows: list[dict[str, float]] = [dict(row) for row in rows]
        self.hook_time_s = 0.0
        self._rate = 0.0
        self._start = 0.0
        self._train_end: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._train_end = None
        # a schedule's rate at the current step, or the rate a plateau cut has set
        rate = self.model.optimizer.learning_rate
        self._rate = float(keras.ops.convert_to_numpy(rate))
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["epoch_time_s"] = (self._train_end or time.perf_counter()) - self._start
        metrics["learning_rate"] = self._rate
        self.rows.append(metrics)
        if not np.isfinite(metrics.get("loss", 0.0)):
            self.model.stop_training = True  # diverged: fit() raises TrainingDiverged after
        if self.on_epoch is not None:
            hook_start = time.perf_counter()
            try:
                self.on_epoch(epoch + 1, dict(metrics))
            finally:
                self.hook_time_s += time.perf_counter() - hook_start
