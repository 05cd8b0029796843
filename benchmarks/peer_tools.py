"""The peers of the time-to-accuracy benchmark (`benchmarks/peers.py`): what a Keras user would
run instead of `mnist-sweep -m sweep=cnn_search`, on its search space written out once for both.

    python -m benchmarks.peer_tools keras_tuner --events FILE --seed 0
    python -m benchmarks.peer_tools optuna --events FILE --seed 0 --tracking-uri sqlite:///x.db

- Keras Tuner `Hyperband` (max_epochs = cnn_search's 10, factor 3, its documented defaults), the
  best model by validation accuracy evaluated on the test set;
- plain Optuna TPE with optuna-integration's `KerasPruningCallback` (median pruner, as in
  Optuna's Keras example) and `MLflowCallback`, one `fit` with validation data, one `evaluate`.

Both get the care our side gets: float32 inputs, the same split (the first 5,000 training images
held out for validation), cnn_search's batch size (64), Adam with the rate decayed by a cosine
over the epochs (cnn_search's `lr_schedule`), the same conv blocks and augmentation layers. Every
trained model appends one JSON line to FILE: unix time, final validation and test accuracy. Test
evaluation is the benchmark's, not the tool's: its seconds are recorded so the parent can take
them out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# cnn_search's train.batch_size, train.epochs and lr_schedule.final_fraction (a test compares)
BATCH_SIZE = 64
EPOCHS = 10
FINAL_FRACTION = 0.02
VAL_SIZE = 5000


class Space(Protocol):
    """What a search space needs from a tool: Optuna's trial or Keras Tuner's HyperParameters."""

    def int(self, name: str, low: int, high: int) -> int: ...
    def float(self, name: str, low: float, high: float, log: bool = False) -> float: ...
    def choice(self, name: str, values: list[Any]) -> Any: ...


class OptunaSpace:
    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def int(self, name: str, low: int, high: int) -> int:
        return self.trial.suggest_int(name, low, high)

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self.trial.suggest_float(name, low, high, log=log)

    def choice(self, name: str, values: list[Any]) -> Any:
        return self.trial.suggest_categorical(name, values)


class KerasTunerSpace:
    def __init__(self, hp: Any) -> None:
        self.hp = hp

    def int(self, name: str, low: int, high: int) -> int:
        return self.hp.Int(name, low, high)

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self.hp.Float(name, low, high, sampling="log" if log else "linear")

    def choice(self, name: str, values: list[Any]) -> Any:
        return self.hp.Choice(name, values)


def cnn_space(space: Space) -> dict[str, Any]:
    """mnist_sweep.config.search_spaces.cnn_blocks + augmentation + cnn_search's learning rate."""
    depth = space.int("conv_depth", 2, 3)
    params: dict[str, Any] = {
        "batch_norm": space.choice("batch_norm", [True, False]),
        "conv_dropout": space.float("conv_dropout", 0.0, 0.3),
    }
    filters = [space.choice("filters_0", [16, 32])]
    for i in range(1, depth):
        filters.append(min(64, filters[-1] * space.choice(f"grow_{i}", [1, 2])))
    params["filters"] = filters
    params["units"] = space.choice("units", [64, 128, 256])
    params["dropout"] = space.float("dropout", 0.0, 0.5)
    strength = 0.0
    if space.choice("augment", [True, False]):
        strength = space.float("augment_strength", 0.25, 1.0)
    params["augment_strength"] = strength
    params["learning_rate"] = space.float("learning_rate", 1e-3, 1e-2, log=True)
    return params


def build_model(params: dict[str, Any], steps_per_epoch: int, epochs: int) -> Any:
    """The model mnist-sweep builds for these values (mnist_sweep.model.models), compiled."""
    import keras
    from keras import layers

    stack: list[Any] = [keras.Input(shape=(28, 28)), layers.Reshape((28, 28, 1))]
    strength = params["augment_strength"]
    if strength:
        stack += [layers.RandomRotation(12.0 * strength / 360.0, fill_mode="constant"),
                  layers.RandomTranslation(0.12 * strength, 0.12 * strength, fill_mode="constant"),
                  layers.RandomZoom(0.12 * strength, fill_mode="constant")]
    for filters in params["filters"]:
        stack.append(layers.Conv2D(filters, 3, padding="same"))
        if params["batch_norm"]:
            stack.append(layers.BatchNormalization(momentum=0.9))
        stack += [layers.Activation("relu"), layers.MaxPooling2D(2)]
        if params["conv_dropout"]:
            stack.append(layers.Dropout(params["conv_dropout"]))
    stack += [layers.Flatten(), layers.Dense(params["units"], activation="relu"),
              layers.Dropout(params["dropout"]), layers.Dense(10, activation="softmax")]
    model = keras.Sequential(stack)
    rate = keras.optimizers.schedules.CosineDecay(
        params["learning_rate"], decay_steps=steps_per_epoch * epochs, alpha=FINAL_FRACTION)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class Data:
    """float32 MNIST in the benchmark's split, from mnist-sweep's cache (no internet here)."""

    def __init__(self, limit_train: int | None) -> None:
        from mnist_sweep.data.mnist import load_mnist

        mnist = load_mnist()
        x = mnist.x_train.astype("float32") / 255.0
        self.x_val, self.y_val = x[:VAL_SIZE], mnist.y_train[:VAL_SIZE]
        self.x_train, self.y_train = x[VAL_SIZE:], mnist.y_train[VAL_SIZE:]
        if limit_train:
            self.x_train, self.y_train = self.x_train[:limit_train], self.y_train[:limit_train]
        self.x_test, self.y_test = mnist.x_test.astype("float32") / 255.0, mnist.y_test
        self.steps_per_epoch = -(-len(self.x_train) // BATCH_SIZE)


class Events:
    """The JSON lines the parent reads; `eval_s` sums the test evaluations so far."""

    def __init__(self, path: str, data: Data) -> None:
        self.path, self.data, self.eval_s = path, data, 0.0

    def model_done(self, model: Any, val: float) -> float:
        start = time.time()
        test = float(model.evaluate(self.data.x_test, self.data.y_test, verbose=0,
                                    batch_size=1024)[1])
        self.eval_s += time.time() - start
        self.write({"state": "complete", "val": float(val), "test": test})
        return test

    def write(self, event: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), "eval_s": self.eval_s, **event}) + "\n")


# ---- the tools -------------------------------------------------------------------------------
def run_keras_tuner(data: Data, events: Events, seed: int, epochs: int) -> None:
    import keras
    import keras_tuner as kt

    class Record(keras.callbacks.Callback):
        """Each model Hyperband trains: its last validation accuracy and its test accuracy."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.val = (logs or {}).get("val_accuracy", 0.0)

        def on_train_end(self, logs: dict | None = None) -> None:
            events.model_done(self.model, self.val)

    def build(hp: Any) -> Any:
        return build_model(cnn_space(KerasTunerSpace(hp)), data.steps_per_epoch, epochs)

    # in the working directory: the benchmark runs each tool in a folder it removes, kill or not
    tuner = kt.Hyperband(build, objective="val_accuracy", max_epochs=epochs, factor=3, seed=seed,
                         directory="keras_tuner", project_name="cnn_search", overwrite=True)
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                 batch_size=BATCH_SIZE, callbacks=[Record()], verbose=0)


def run_optuna(data: Data, events: Events, seed: int, epochs: int, tracking_uri: str) -> None:
    import optuna
    from optuna_integration import KerasPruningCallback, MLflowCallback

    def objective(trial: optuna.Trial) -> float:
        model = build_model(cnn_space(OptunaSpace(trial)), data.steps_per_epoch, epochs)
        try:
            history = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=BATCH_SIZE,
                                validation_data=(data.x_val, data.y_val), verbose=0,
                                callbacks=[KerasPruningCallback(trial, "val_accuracy")])
        except optuna.TrialPruned:
            events.write({"state": "pruned"})
            raise
        val = history.history["val_accuracy"][-1]
        trial.set_user_attr("test_accuracy", events.model_done(model, val))
        return val

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=1000, callbacks=[
        MLflowCallback(tracking_uri=tracking_uri, metric_name="val_accuracy")])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tool", choices=("keras_tuner", "optuna"))
    parser.add_argument("--events", required=True, help="JSON lines file, appended to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="cnn_search's train.epochs")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args(argv)
    data = Data(args.limit_train)
    events = Events(args.events, data)
    events.write({"state": "started"})
    if args.tool == "keras_tuner":
        run_keras_tuner(data, events, args.seed, args.epochs)
    else:
        run_optuna(data, events, args.seed, args.epochs, args.tracking_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
