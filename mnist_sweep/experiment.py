"""One tracked run: load, build, train, evaluate (clean, then noisy), record.

The task every sweep trial runs, on a config `registry.validate` has checked and with the backend
chosen (`cli.main` does both before Keras is imported).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import mlflow
import numpy as np
from hydra_plugins.optuna_mlflow_sweeper import trial as sweep_trial
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.config import registry as config_mod
from mnist_sweep.data import mnist
from mnist_sweep.model import checkpoints, evaluation, models, training
from mnist_sweep.tracking import render, runs

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | list[float]:
    """Run one experiment and return the configured objective value(s) for a sweeper."""
    splits = mnist.prepare(cfg.data)
    uri = runs.resolve_tracking_uri(cfg.tracking.uri)
    run_name = f"{cfg.model.family}-bs{cfg.train.batch_size}-e{cfg.train.epochs}"
    if cfg.tracking.log_plots:
        render.HELPER.start()  # (once per process) its imports overlap this run's training
    store = checkpoints.for_run(cfg)
    # a checkpoint outlives the run only when interrupted: what its retry resumes from
    with runs.start_run(uri, cfg.tracking.experiment, run_name) as active, \
            checkpoints.kept_for_retry(store):
        mlflow.set_tags(runs.provenance_tags())
        runs.log_params(config_mod.flatten(config_mod.to_dict(cfg)))
        mlflow.log_text(runs.redact(OmegaConf.to_yaml(cfg, resolve=True), runs.known_secrets()),
                        "config.yaml")
        runs.log_dataset(
            splits.x_train, splits.y_train, "mnist-train", "training", splits.source
        )
        model = models.build_model(cfg.model, seed=cfg.train.seed, augment=cfg.train.augment,
                                  noise=cfg.train.noise_augment)
        mlflow.log_param("model.n_params", model.count_params())

        def on_epoch(step: int, metrics: dict[str, float]) -> None:
            # step = epochs done, in MLflow and Optuna alike: the resource pruners count
            # (Hyperband's min_resource=1 judges a trial after its first epoch).
            runs.log_epoch(step, metrics)
            if "val_accuracy" in metrics:
                sweep_trial.report(metrics["val_accuracy"], step)

        result = training.fit(
            model, splits, cfg.train, on_epoch=on_epoch, verbose=_verbosity(cfg.progress),
            checkpoints=store,
        )
        if result.resumed_from_epoch:
            mlflow.set_tag("resumed_from_epoch", result.resumed_from_epoch)
        # Figures are drawn by a helper process while this one evaluates and saves the model;
        # leaving the block waits for them and logs them under plots/.
        with render.figures(cfg.tracking.log_plots, on_done=runs.log_plot_dir) as figures:
            figures.draw("learning_curves.png", "learning_curves", result.history)
            clean = evaluation.evaluate_clean(model, splits.x_test, splits.y_test,
                                              cfg.eval.batch_size)
            _draw_test_figures(figures, clean, splits, cfg.eval.misclassified)
            noise_accuracy = evaluation.evaluate_noise(
                model, splits.x_test, splits.y_test, cfg.eval.noise_levels, cfg.eval.noise_seed,
                cfg.eval.batch_size,
            )
            figures.draw("noise_accuracy.png", "noise_accuracy", noise_accuracy,
                         clean.metrics["test_accuracy"])
            # the same noise on the validation digits: what a sweep may select on (test_* is
            # for reporting; a search that maximizes a test metric overstates it)
            val_noise = evaluation.evaluate_noise(
                model, splits.x_val, splits.y_val, cfg.eval.noise_levels, cfg.eval.noise_seed,
                cfg.eval.batch_size,
            ) if len(splits.x_val) else {}
            model_id = None
            if cfg.tracking.log_model:  # it takes raw uint8 digits, as a caller has them
                model_id = runs.log_keras_model(models.serving_model(model),
                                                splits.x_test_raw[:5],
                                                runs.model_name(cfg.model.family))
            metrics = {
                **clean.metrics,
                **evaluation.noise_metrics(noise_accuracy),
                **evaluation.noise_metrics(val_noise, split="val"),
                "train_time_s": result.train_time_s,
                "epoch_time_s_mean": float(np.mean(result.history["epoch_time_s"])),
                "epochs_run": result.epochs_run,
                "n_params": model.count_params(),
            }
            runs.log_metrics(metrics, model_id=model_id)
            if "val_accuracy" in result.history:
                # Of the weights the model ends with (early stopping restores the best epoch's),
                # as measured during training: not predicted again, and not logged again (the
                # per-epoch curves carry them).
                for key in ("val_accuracy", "val_loss"):
                    metrics[key] = result.history[key][result.weights_epoch]
            _record_in_trial(metrics)
        if cfg.progress:
            _print_summary(cfg, metrics, noise_accuracy, uri, active.info.experiment_id,
                           active.info.run_id)
    return _objectives(cfg, metrics)


def _record_in_trial(metrics: dict[str, float]) -> None:
    """Keep whole-run metrics on the Optuna trial too, so reports need only the study."""
    trial = sweep_trial.current_trial()
    if trial is not None:
        for name, value in metrics.items():
            trial.set_user_attr(name, float(value))


def _objectives(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float]:
    values = [float(metrics[name]) for name in cfg.objectives]
    return values[0] if len(values) == 1 else values


def _draw_test_figures(
    figures: render.Figures, clean: evaluation.Clean, splits: mnist.Splits, n_wrong: int
) -> None:
    """The figures of the clean test set: the confusion matrix and the misclassified digits."""
    probs, predictions = clean.probabilities, clean.predictions
    counts = evaluation.confusion_matrix(splits.y_test, predictions)
    figures.draw("confusion_matrix.png", "confusion", counts)
    wrong = evaluation.misclassified(splits.y_test, predictions, n_wrong)
    figures.draw("misclassified.png", "misclassified_gallery", splits.x_test[wrong],
                 splits.y_test[wrong], probs[wrong], wrong.tolist())


def _verbosity(progress: bool) -> int:
    """Keras epoch bars on a terminal, one line per epoch in logs, nothing when quiet."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _print_summary(
    cfg: DictConfig, metrics: dict[str, Any], noise_accuracy: dict[float, float], uri: str,
    experiment_id: str, run_id: str,
) -> None:
    if sweep_trial.in_sweep():  # one line per trial; the sweeper prints where to look at the end
        print(f"  trial: test accuracy {metrics['test_accuracy']:.4f}, "
              f"train {metrics['train_time_s']:.1f} s, MLflow run {run_id}", flush=True)
        return
    noisy = "  ".join(
        f"f={f:g}: {acc:.4f}" for f, acc in sorted(noise_accuracy.items())
    )
    links = runs.ui_links(uri, experiment_id, run_id)
    ui = (f"  open the UI     {links['command']}\n                  then {links['run']}\n"
          if links["command"] else f"  in the UI       {links['run']}\n")  # a tracking server
    print(
        f"\n{cfg.model.family} model, {metrics['n_params']:,} params, "
        f"{metrics['epochs_run']} epoch(s) at batch {cfg.train.batch_size}\n"
        f"  test accuracy   {metrics['test_accuracy']:.4f}   (loss {metrics['test_loss']:.4f})\n"
        f"  noisy accuracy  {noisy}\n"
        f"  train time      {metrics['train_time_s']:.1f} s in all, "
        f"{metrics['epoch_time_s_mean']:.2f} s per epoch of training "
        "(the rest: compiling, validation)\n"
        f"  MLflow run      {run_id}  in {uri}\n"
        f"{ui}"
        f"  compare runs    {links['experiment']}\n",
        flush=True,
    )
