"""Reports on finished studies: a trial table, Optuna's plots, and the batch-size study's figures
(`batch_size`).

Everything is read back from the Optuna storage (trial params, states, per-epoch validation
accuracy as intermediate values, whole-run metrics as user attrs), so a report can be made for any
study at any time, independently of the run that produced it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import optuna  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper.results import write_study_plots  # noqa: E402
from hydra_plugins.optuna_mlflow_sweeper.tracking import (  # noqa: E402
    mask_url,
    resolve_tracking_uri,
)

from mnist_sweep.reports import batch_size, robustness, studies  # noqa: E402

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
    rows = batch_size.summarize(study, args.target_accuracy)
    if len(rows) > 1:
        print("\n" + batch_size.table(rows, args.target_accuracy))
        line = batch_size.warning_line(batch_size.spread_warnings(rows))
        if line:
            print(line)
        written += batch_size.write(rows, args.target_accuracy, out)
    plots = [p for p in written if p.suffix == ".png"]
    print(f"\nwrote {len(plots)} plots{' and the batch-size table' if len(rows) > 1 else ''} "
          f"to {out}/")
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
