"""The notebook's batch-size study, read back from its Optuna study: per batch size, the mean and
spread over seeds of the steady per-epoch training time, the test accuracy and the epochs to a
target validation accuracy; three figures, a table and `summary.json`, on disk and on the parent.

Honest at small sizes, where a quick look (`data.limit_train=5000 train.epochs=2 repeats=2`)
measures little: the first epoch, which traces and compiles, is timed apart from the steady ones
(the study's time figure); a target not reached is said so ("not reached in N epochs", `null` in
JSON, never NaN), not drawn as an empty plot; and when the seeds' spread is larger than the
differences between batch sizes, a one-line warning says so, on the terminal and in the summary.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper.tracking import ui_links  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from mnist_sweep.reports import finished  # noqa: E402

Row = dict[str, Any]
# the trial's whole-run user attrs summarized per batch size (experiment.run records them)
MEASURES = ("epoch_time_s_steady", "epoch_time_s_first", "train_time_s", "test_accuracy")
# what the study compares between batch sizes: its spread warning looks at these
COMPARED = {"epoch_time_s_steady": "steady s/epoch", "test_accuracy": "test accuracy"}
ARTIFACT_DIR = "batch_size_study"  # on the parent run
LOCAL_DIR = "report"  # in the sweep's folder: multirun/batch_size_study/report/


def epochs_to_target(trial: optuna.trial.FrozenTrial, target: float) -> int | None:
    """Epochs done when validation accuracy first reached `target` (the trial's reports are
    stepped by epochs done, 1, 2, ...); None if it never did."""
    for step in sorted(trial.intermediate_values):
        if trial.intermediate_values[step] >= target:
            return int(step)
    return None


def summarize(study: optuna.Study, target: float) -> list[Row]:
    """Per batch size: `n` seeds, `epochs` (the most any ran), mean and std over seeds of each of
    MEASURES and of the epochs to target (over the seeds that reached it: `reached_target`).
    None where nothing was measured, so that the rows are valid JSON as they are."""
    groups: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "train.batch_size" in t.params:
            groups.setdefault(int(t.params["train.batch_size"]), []).append(t)
    rows = []
    for batch_size, trials in sorted(groups.items()):
        row: Row = {"batch_size": batch_size, "n": len(trials),
                    "epochs": max(len(t.intermediate_values) for t in trials)}
        for key in MEASURES:
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(
                [t.user_attrs[key] for t in trials if key in t.user_attrs])
        reached = [e for e in (epochs_to_target(t, target) for t in trials) if e is not None]
        row["epochs_to_target_mean"], row["epochs_to_target_std"] = _mean_std(reached)
        row["reached_target"] = len(reached)
        rows.append(row)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def spread_warnings(rows: Sequence[Row]) -> list[str]:
    """What the seeds cannot tell apart: for each compared measure, the neighbouring batch sizes
    whose means differ by less than the larger of their standard deviations."""
    found = []
    for key, label in COMPARED.items():
        pairs = []
        for a, b in itertools.pairwise(rows):
            if a["n"] < 2 or b["n"] < 2 or a[f"{key}_mean"] is None or b[f"{key}_mean"] is None:
                continue
            gap = abs(a[f"{key}_mean"] - b[f"{key}_mean"])
            spread = max(a[f"{key}_std"], b[f"{key}_std"])
            if spread > gap:
                pairs.append(f"{a['batch_size']} vs {b['batch_size']} ({gap:.3g} apart, "
                             f"std {spread:.3g})")
        if pairs:
            found.append(f"{label}: {', '.join(pairs)}")
    return found


def warning_line(warnings: Sequence[str]) -> str | None:
    if not warnings:
        return None
    return ("warning: the spread between seeds is larger than the differences it reports, too "
            f"small a setting to tell these apart (more data, epochs or repeats): "
            f"{'; '.join(warnings)}")


def not_reached(row: Row) -> str:
    return f"not reached in {row['epochs']} epochs"


def table(rows: Sequence[Row], target: float) -> str:
    """The terminal's and `table.txt`'s table: one line per batch size."""
    def pm(mean: float | None, std: float | None, digits: int) -> str:
        return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"

    header = (f"{'batch':>6} {'n':>3} {'s/epoch (steady)':>17} {'1st epoch s':>11} "
              f"{'train s':>12} {'test accuracy':>16}  epochs to val. accuracy {target:g}")
    lines = [header]
    for r in rows:
        reached = "-" if r["epochs_to_target_mean"] is None else (
            f"{r['epochs_to_target_mean']:.1f} ({r['reached_target']} of {r['n']} seeds)")
        first = r["epoch_time_s_first_mean"]
        lines.append(
            f"{r['batch_size']:>6} {r['n']:>3} "
            f"{pm(r['epoch_time_s_steady_mean'], r['epoch_time_s_steady_std'], 3):>17} "
            f"{'-' if first is None else f'{first:.2f}':>11} "
            f"{pm(r['train_time_s_mean'], r['train_time_s_std'], 1):>12} "
            f"{pm(r['test_accuracy_mean'], r['test_accuracy_std'], 4):>16}  "
            f"{not_reached(r) if r['reached_target'] == 0 else reached}")
    return "\n".join(lines)


def figures(rows: Sequence[Row], target: float) -> dict[str, Any]:
    """The notebook's two plots, with error bars over seeds (time: the steady epochs, the first
    epoch beside them), and the epochs to target, where reached; what was not, is said."""
    sizes = [row["batch_size"] for row in rows]
    lost = {w.split(":")[0] for w in spread_warnings(rows)}
    drawn = {}
    for name, key, label in (
            ("batch_size_vs_train_time.png", "epoch_time_s_steady",
             "training s per epoch (steady epochs)"),
            ("batch_size_vs_accuracy.png", "test_accuracy", "test accuracy"),
            ("batch_size_vs_epochs_to_target.png", "epochs_to_target",
             f"epochs to val accuracy >= {target:g}")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        kept = [r for r in rows if r[f"{key}_mean"] is not None]
        if kept:
            ax.errorbar([r["batch_size"] for r in kept], [r[f"{key}_mean"] for r in kept],
                        yerr=[r[f"{key}_std"] for r in kept], fmt="o-", capsize=4,
                        label="mean ± std over seeds")
        if key == "epoch_time_s_steady" and any(r["epoch_time_s_first_mean"] for r in rows):
            firsts = [r for r in rows if r["epoch_time_s_first_mean"] is not None]
            ax.plot([r["batch_size"] for r in firsts],
                    [r["epoch_time_s_first_mean"] for r in firsts], "s--", mfc="none",
                    label="first epoch (tracing, compiling), mean")
            ax.legend()
        missing = [r for r in rows if r[f"{key}_mean"] is None]
        if missing:
            what = (not_reached(missing[0]) if key == "epochs_to_target"
                    else "no steady epoch (1 epoch per trial)" if key == "epoch_time_s_steady"
                    else "not measured")
            at = ", ".join(str(r["batch_size"]) for r in missing)
            ax.text(0.5, 0.5 if not kept else 0.9, f"{what} at batch size {at}",
                    transform=ax.transAxes, ha="center", va="center", fontsize=12)
        ax.set_xscale("log", base=2)
        ax.set_xlim(min(sizes) / 1.4, max(sizes) * 1.4)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        if not kept:
            ax.set_yticks([])
        ax.set_title(f"{label} vs batch size" + (
            "\n(the spread between seeds is larger than these differences)"
            if COMPARED.get(key) in lost else ""))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        drawn[name] = fig
    return drawn


def summary_json(rows: Sequence[Row], target: float, warnings: Sequence[str]) -> str:
    """`summary.json`: strict JSON (`allow_nan=False`: a NaN would be a bug, not a value)."""
    return json.dumps({"target_accuracy": target, "rows": list(rows),
                       "spread_warnings": list(warnings)}, indent=2, allow_nan=False)


def write(rows: Sequence[Row], target: float, out: Path) -> list[Path]:
    """The figures, `summary.json` and `table.txt` into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(rows, target).items():
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    warnings = spread_warnings(rows)
    (out / "summary.json").write_text(summary_json(rows, target, warnings) + "\n")
    line = warning_line(warnings)
    (out / "table.txt").write_text(table(rows, target) + (f"\n{line}" if line else "") + "\n")
    return [*written, out / "summary.json", out / "table.txt"]


class BatchSizeReport(Callback):
    """Hydra callback for `sweep=batch_size_study`: the table and its warning on the terminal, the
    figures, table and summary in the sweep's folder and on the parent run, and where they are."""

    def __init__(self, target_accuracy: float = 0.93) -> None:
        self.target = float(target_accuracy)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import mlflow

        sweep = finished.read(config)
        if sweep is None:
            return
        rows = summarize(sweep.study, self.target)
        if not rows:
            return
        print("\nbatch-size study (mean ± std over seeds; the first epoch, which traces and "
              "compiles, apart)\n" + table(rows, self.target))
        line = warning_line(spread_warnings(rows))
        if line:
            print(line)
        out = Path(str(config.hydra.sweep.dir)) / LOCAL_DIR
        write(rows, self.target, out)
        print(f"plots, table.txt and summary.json in {out}/")
        if not sweep.parent:
            return
        client = mlflow.MlflowClient(tracking_uri=sweep.parent["tracking_uri"])
        run_id = sweep.parent["parent_run_id"]
        client.log_artifacts(run_id, str(out), ARTIFACT_DIR)
        experiment_id = client.get_run(run_id).info.experiment_id
        link = ui_links(sweep.parent["tracking_uri"], experiment_id, run_id)["run"]
        print(f"and on the MLflow parent run {run_id} ({ARTIFACT_DIR}/): {link}")
