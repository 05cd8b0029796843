"""The baseline of the throughput benchmark: what a user would write instead of mnist-sweep.

A plain Optuna study with optuna-integration's `MLflowCallback`, trained as the Keras docs do
(float32 arrays, one `fit` with validation data, one `evaluate` on the clean and each noisy test
set), the same search space as `sweep=quickstart` (one hidden layer: width, activation, learning
rate). Run as a whole process, like the mnist-sweep command it is compared with:

    python -m benchmarks.plain_optuna --trials 8 --epochs 2 --tracking-uri sqlite:///x.db

The MNIST arrays come from mnist-sweep's cache (this machine has no internet for Keras' download);
loading them is a fraction of a second, as a user's `load_data()` from Keras' cache would be.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    from mnist_sweep.data.mnist import load_mnist

    mnist = load_mnist()
    # float32, as the Keras examples scale MNIST: float64 arrays are cast on every batch
    x_all = mnist.x_train.astype("float32") / 255
    x_test = mnist.x_test.astype("float32") / 255
    x_val, y_val = x_all[:5000], mnist.y_train[:5000]
    x_train, y_train = x_all[5000:], mnist.y_train[5000:]
    if args.limit_train:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    rng = np.random.default_rng(0)
    noisy = {f: x_test + f * rng.random(x_test.shape, dtype=np.float32)
             for f in (0.25, 0.5, 0.75, 1.0)}

    def objective(trial: optuna.Trial) -> float:
        units = trial.suggest_int("model.hidden.0.units", 8, 128, log=True)
        activation = trial.suggest_categorical("model.hidden.0.activation", ["sigmoid", "relu"])
        lr = trial.suggest_float("train.learning_rate", 1e-4, 3e-2, log=True)
        model = keras.Sequential([
            keras.Input(shape=(28, 28)), keras.layers.Flatten(),
            keras.layers.Dense(units, activation=activation),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=32,
                            validation_data=(x_val, y_val), verbose=0)
        test_loss, test_accuracy = model.evaluate(x_test, mnist.y_test, verbose=0)
        trial.set_user_attr("test_accuracy", test_accuracy)
        for f, x in noisy.items():
            trial.set_user_attr(f"test_accuracy_noise_{f:g}",
                                model.evaluate(x, mnist.y_test, verbose=0)[1])
        return history.history["val_accuracy"][-1]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callback = MLflowCallback(tracking_uri=args.tracking_uri, metric_name="val_accuracy",
                              mlflow_kwargs={"nested": False})
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective, n_trials=args.trials, callbacks=[callback])
    print(f"best val_accuracy={study.best_value:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
