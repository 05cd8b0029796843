"""Reports on finished studies: a trial table, Optuna's plots, and the batch-size study's figures.

Everything is read back from the Optuna storage (trial params, states, per-epoch validation
accuracy as intermediate values, whole-run metrics as user attrs), so a report can be made for any
study at any time, independently of the run that produced it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper.results import write_study_plots  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper.tracking import (  # noqa: E402
    mask_url,
    resolve_tracking_uri,
)
from omegaconf import DictConfig  # noqa: E402

from mnist_sweep.reports import finished, robustness, studies  # noqa: E402

# clean and noisy test accuracy side by side: a search for one must not hide the other
TABLE_ATTRS = ("val_accuracy", "test_accuracy", "test_accuracy_noise_0.5",
               "test_accuracy_noise_mean", "train_time_s")


def trials_table(study: optuna.Study) -> str:
    """One line per trial: number, state, objective value(s), key metrics and params."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = "-" if t.values is None else ", ".join(f"{v:.4g}" for v in t.values)
        attrs = " ".join(
            f"{k}={t.user_attrs[k]:.4g}" for k in TABLE_ATTRS if k in t.user_attrs
        )
        params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
        rows.append(f"{t.number:>4}  {t.state.name:<8}  {values:<16}  {attrs}  {params}")
    header = f"{'#':>4}  {'state':<8}  {'value(s)':<16}  metrics  params"
    return "\n".join([header, *rows])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def epochs_to_target(trial: optuna.trial.FrozenTrial, target: float) -> float:
    """Epochs done when validation accuracy first reached `target` (the trial's reports are
    stepped by epochs done, 1, 2, ...); NaN if never."""
    for step in sorted(trial.intermediate_values):
        if trial.intermediate_values[step] >= target:
            return float(step)
    return math.nan


def batch_size_summary(study: optuna.Study, target: float) -> list[dict[str, float]]:
    """Per batch size: mean and std over seeds of time, accuracy and epochs to target."""
    groups: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "train.batch_size" in t.params:
            groups.setdefault(int(t.params["train.batch_size"]), []).append(t)
    summary = []
    for batch_size, trials in sorted(groups.items()):
        row: dict[str, float] = {"batch_size": batch_size, "n": len(trials)}
        for key in ("train_time_s", "epoch_time_s_mean", "test_accuracy"):
            values = [t.user_attrs[key] for t in trials if key in t.user_attrs]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        reached = [epochs_to_target(t, target) for t in trials]
        row["epochs_to_target_mean"], row["epochs_to_target_std"] = _mean_std(reached)
        row["reached_target"] = float(sum(not math.isnan(r) for r in reached))
        summary.append(row)
    return summary


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def batch_size_figures(summary: list[dict[str, float]], target: float) -> dict[str, Any]:
    """The notebook's two plots, with error bars over seeds, plus epochs to target accuracy."""
    sizes = [row["batch_size"] for row in summary]
    panels = {
        "batch_size_vs_train_time.png": ("train_time_s", "training time (s)"),
        "batch_size_vs_accuracy.png": ("test_accuracy", "test accuracy"),
        "batch_size_vs_epochs_to_target.png": (
            "epochs_to_target", f"epochs to val accuracy >= {target:g}"
        ),
    }
    figures = {}
    for name, (key, label) in panels.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        means = [row[f"{key}_mean"] for row in summary]
        stds = [row[f"{key}_std"] for row in summary]
        ax.errorbar(sizes, means, yerr=stds, fmt="o-", capsize=4)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(s)) for s in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs batch size (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        figures[name] = fig
    return figures


def format_batch_size_summary(summary: list[dict[str, float]]) -> str:
    header = (f"{'batch':>6} {'n':>3} {'time s':>14} {'s/epoch':>8} {'test acc':>16} "
              f"{'ep→target':>10}")
    lines = [header]
    for r in summary:
        lines.append(
            f"{int(r['batch_size']):>6} {int(r['n']):>3} "
            f"{r['train_time_s_mean']:>7.1f} ± {r['train_time_s_std']:<4.1f} "
            f"{r['epoch_time_s_mean_mean']:>8.2f} "
            f"{r['test_accuracy_mean']:>8.4f} ± {r['test_accuracy_std']:<6.4f} "
            f"{r['epochs_to_target_mean']:>10.1f}"
        )
    return "\n".join(lines)


class BatchSizeReport(Callback):
    """Hydra callback for `sweep=batch_size_study`: figures and table onto the parent run."""

    def __init__(self, target_accuracy: float = 0.93) -> None:
        self.target = float(target_accuracy)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import mlflow

        sweep = finished.read(config)
        if sweep is None:
            return
        summary = batch_size_summary(sweep.study, self.target)
        if not summary:
            return
        print("\nbatch-size study (mean ± std over seeds)\n" + format_batch_size_summary(summary))
        if not sweep.parent:
            return
        client = mlflow.MlflowClient(tracking_uri=sweep.parent["tracking_uri"])
        run_id = sweep.parent["parent_run_id"]
        for name, fig in batch_size_figures(summary, self.target).items():
            client.log_figure(run_id, fig, f"batch_size_study/{name}")
            plt.close(fig)
        client.log_dict(run_id, {"target_accuracy": self.target, "rows": summary},
                        "batch_size_study/summary.json")


def main(argv: Sequence[str] | None = None) -> int:
    """`mnist-sweep-report STUDY`: print a study's trials and write its plots."""
    parser = argparse.ArgumentParser(prog="mnist-sweep-report", description=main.__doc__)
    parser.add_argument("study", help="study name (e.g. batch_size_study)")
    parser.add_argument(
        "--storage", default=os.environ.get("OPTUNA_STORAGE"),
        help="Optuna storage URL (default: $OPTUNA_STORAGE, ./multirun/STUDY/optuna.db, "
             "where that sweep recorded it, or the storage its MLflow parent run names)",
    )
    parser.add_argument(
        "--tracking-uri", default=None,
        help="MLflow tracking store asked when nothing else knows the study (default: "
             "$MLFLOW_TRACKING_URI, else ./mlflow.db)",
    )
    parser.add_argument("--out", default=None, help="directory for plots (default: reports/STUDY)")
    parser.add_argument("--target-accuracy", type=float, default=0.93)
    args = parser.parse_args(argv)
    try:
        study, others = _load(args.study, args.storage, resolve_tracking_uri(args.tracking_uri))
    except LookupError as exc:
        print(f"mnist-sweep-report: {exc}", file=sys.stderr)
        return 2
    if others:
        print(f"mnist-sweep-report: a study {args.study!r} is also in {', '.join(others)} "
              "(--storage picks one)", file=sys.stderr)
    print(trials_table(study))
    reference = study.user_attrs.get(robustness.STUDY_ATTR, {}).get("reference")
    print("\n" + robustness.summary_text(study, reference))
    out = Path(args.out or f"reports/{args.study}")
    out.mkdir(parents=True, exist_ok=True)
    written = write_study_plots(study, out)
    figure = robustness.clean_vs_noisy(study, reference)
    if figure is not None:
        figure.savefig(out / "clean_vs_noisy.png")
        written.append(out / "clean_vs_noisy.png")
    summary = batch_size_summary(study, args.target_accuracy)
    if len({row["batch_size"] for row in summary}) > 1:
        print("\n" + format_batch_size_summary(summary))
        for name, fig in batch_size_figures(summary, args.target_accuracy).items():
            fig.savefig(out / name)
            plt.close(fig)
            written.append(out / name)
    print(f"\nwrote {len(written)} plots to {out}/")
    return 0


def _load(name: str, storage: str | None, tracking_uri: str) -> tuple[optuna.Study, list[str]]:
    """The study and the other storages known to hold one of its name, or LookupError with one
    line saying what was looked at and what is known."""
    found = studies.find(name, storage, tracking_uri)
    if not found:
        names = ", ".join(sorted(studies.known())) or "none recorded yet"
        raise LookupError(f"no study {name!r} in ./multirun/{name}/, among the sweeps run by "
                          f"this user ({names}) nor in {mask_url(tracking_uri)}; pass --storage "
                          "URL")
    url, others = found[0], found[1:]
    path = studies.sqlite_file(url)
    if path is not None and not path.is_file():  # opening it would create an empty database
        raise LookupError(f"study {name!r}: {path} does not exist (moved or deleted?)")
    if "***" in url:
        raise LookupError(f"study {name!r} is in {url}: pass --storage with the password, or "
                          "set OPTUNA_STORAGE")
    try:
        return optuna.load_study(study_name=name, storage=url), others
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(url)) or "none"
        raise LookupError(f"no study {name!r} in {mask_url(url)}; studies there: "
                          f"{names}") from None
    except Exception as exc:  # a server down, a bad URL: the reason, not a traceback
        raise LookupError(f"could not open {mask_url(url)}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


if __name__ == "__main__":
    sys.exit(main())
