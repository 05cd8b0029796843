"""Real short trainings on real MNIST slices: it learns, it is repeatable, it reports per epoch.

The quick tier trains once or twice (learning, divergence, pruning); the trainings that compare
two or three runs of several epochs are marked slow.
"""

import math

import numpy as np
import pytest

from mnist_sweep.data import mnist
from mnist_sweep.errors import TrainingDiverged
from mnist_sweep.model import evaluation, models
from mnist_sweep.model.models import build_model
from mnist_sweep.model.training import fit


def _train(cfg, **kwargs):
    splits = mnist.prepare(cfg.data)
    model = build_model(cfg.model, seed=cfg.train.seed)
    return model, fit(model, splits, cfg.train, **kwargs)


def test_short_training_learns_and_reports_each_epoch(compose):
    cfg = compose(["data.limit_train=4000", "data.val_size=1000", "train.epochs=3",
                   "train.batch_size=32"])
    seen = []
    model, result = _train(cfg, on_epoch=lambda step, logs: seen.append((step, logs)))
    assert [step for step, _ in seen] == [1, 2, 3]  # epochs done
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s"} <= set(seen[0][1])
    assert result.epochs_run == 3 and len(result.history["epoch_time_s"]) == 3
    # Learning, not guessing: chance is 0.1; the loss falls epoch over epoch.
    assert result.history["val_accuracy"][-1] > 0.75
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.train_time_s >= sum(result.history["epoch_time_s"])


@pytest.mark.slow
def test_same_seed_same_result_other_seed_differs(compose):
    cfg = compose(["data.limit_train=2000", "data.val_size=500", "train.epochs=2", "train.seed=7"])
    _, first = _train(cfg)
    _, again = _train(cfg)
    _, other = _train(compose(["data.limit_train=2000", "data.val_size=500", "train.epochs=2",
                                   "train.seed=8"]))
    assert first.history["val_accuracy"] == again.history["val_accuracy"]
    assert first.history["loss"] == again.history["loss"]
    assert first.history["loss"] != other.history["loss"]


@pytest.mark.slow
def test_steps_per_execution_does_not_change_the_math(compose):
    """The fast path trains the same model as a plain `fit` (one batch per call)."""
    base = ["data.limit_train=2000", "train.epochs=2", "train.seed=3"]
    _, fast = _train(compose([*base, "train.steps_per_execution=auto"]))
    _, plain = _train(compose([*base, "train.steps_per_execution=1"]))
    np.testing.assert_allclose(fast.history["loss"], plain.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(fast.history["val_accuracy"], plain.history["val_accuracy"],
                               atol=2e-4)


@pytest.mark.slow
def test_early_stopping_stops_before_the_epoch_budget(compose):
    cfg = compose(["data.limit_train=1000", "data.val_size=1000", "train.epochs=30",
                   "train.learning_rate=0.05", "train.early_stopping_patience=1"])
    model, result = _train(cfg)
    assert result.epochs_run < 30
    # the best epoch's weights are restored, and its recorded val_accuracy is what they score
    best = int(np.argmax(result.history["val_accuracy"]))
    assert result.weights_epoch == best < result.epochs_run - 1
    splits = mnist.prepare(cfg.data)
    probs = models.predict(model, splits.x_val, 1000)
    assert evaluation.accuracy(probs, splits.y_val) == pytest.approx(
        result.history["val_accuracy"][best], abs=1e-6)


def test_a_diverging_run_raises_training_diverged(compose):
    cfg = compose(["data.limit_train=2000", "data.val_size=500", "train.epochs=3",
                   "train.optimizer=sgd",
                   "train.learning_rate=9.9",
                   "model.hidden=[{units:256,activation:linear},{units:256,activation:linear}]"])
    epochs_seen = []
    with pytest.raises(TrainingDiverged, match="non-finite"):
        _train(cfg, on_epoch=lambda epoch, logs: epochs_seen.append(logs["loss"]))
    # stopped at the end of the first epoch whose loss is not finite, not after all three
    assert not np.isfinite(epochs_seen[-1]) and np.all(np.isfinite(epochs_seen[:-1]))
    assert len(epochs_seen) < 3



@pytest.mark.slow
def test_the_schedule_sets_each_epochs_learning_rate(compose):
    """Rates at the start of each epoch, as logged per epoch (`learning_rate`)."""
    base = ["data.limit_train=640", "data.val_size=500", "train.epochs=4",
            "train.batch_size=64", "train.learning_rate=0.01"]  # 10 steps an epoch
    _, constant = _train(compose(base))
    assert constant.history["learning_rate"] == pytest.approx([0.01] * 4)
    _, cosine = _train(compose([*base, "train.lr_schedule.name=cosine",
                                "train.lr_schedule.final_fraction=0.1"]))
    # 0.01 * (0.1 + 0.9 * (1 + cos(pi * epoch / 4)) / 2) after 0, 1, 2, 3 of 4 epochs
    expected = [0.01 * (0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2) for e in range(4)]
    assert cosine.history["learning_rate"] == pytest.approx(expected, rel=1e-4)
    _, exponential = _train(compose([*base, "train.lr_schedule.name=exponential",
                                     "train.lr_schedule.factor=0.5"]))
    assert exponential.history["learning_rate"] == pytest.approx(
        [0.01, 0.005, 0.0025, 0.00125], rel=1e-4)


@pytest.mark.slow
def test_reduce_on_plateau_cuts_the_rate_when_validation_stalls(compose):
    # a rate this high makes validation accuracy stall or fall within a few epochs
    cfg = compose(["data.limit_train=500", "data.val_size=500", "train.epochs=6",
                   "train.learning_rate=0.5", "train.lr_schedule.name=reduce_on_plateau",
                   "train.lr_schedule.factor=0.1", "train.lr_schedule.patience=1"])
    _, result = _train(cfg)
    rates, val = result.history["learning_rate"], result.history["val_accuracy"]
    assert rates[0] == pytest.approx(0.5) and min(rates) < 0.5
    first_cut = next(i for i, r in enumerate(rates) if r < 0.5 - 1e-9)
    # cut after an epoch that did not beat the best validation accuracy before it
    assert val[first_cut - 1] <= max(val[: first_cut - 1])


def test_a_pruner_stops_training_with_early_stopping_on(compose):
    """An exception from the per-epoch hook (Optuna's TrialPruned) ends training at once, before
    early stopping or a plateau cut acts on that epoch, and propagates."""
    import optuna

    cfg = compose(["data.limit_train=500", "data.val_size=500", "train.epochs=10",
                   "train.early_stopping_patience=3", "train.lr_schedule.name=reduce_on_plateau"])
    steps = []

    def prune_at_two(step, logs):
        steps.append(step)
        if step == 2:
            raise optuna.TrialPruned(f"pruned at step {step}")

    with pytest.raises(optuna.TrialPruned):
        _train(cfg, on_epoch=prune_at_two)
    assert steps == [1, 2]


@pytest.mark.slow
def test_noise_augmented_training_is_repeatable_and_leaves_the_data_clean(compose):
    cfg = compose(["data.limit_train=2000", "data.val_size=500", "train.epochs=2", "train.seed=5"])
    splits = mnist.prepare(cfg.data)
    before = splits.x_train.copy()
    initial = build_model(cfg.model, seed=5).get_weights()
    runs = []
    for noise in (0.5, 0.5, 0.0):
        model = build_model(cfg.model, seed=5, noise=noise)
        model.set_weights(initial)  # the same start: only the noise can tell the runs apart
        runs.append(fit(model, splits, cfg.train).history["loss"])
        np.testing.assert_array_equal(splits.x_train, before)
    noisy, again, clean = runs
    assert noisy == again and noisy != clean
