"""Time to accuracy against the peers: `mnist-sweep -m sweep=cnn_search` as a user runs it, Keras
Tuner's Hyperband and plain Optuna TPE (`benchmarks/peer_tools.py`), on the same search space,
data split, cores and wall budget, one at a time and alternately, as JSON lines and a plot.

    python -m benchmarks.peers                      # 20 minutes a tool, 2 seeds: ~2 hours
    python -m benchmarks.peers --budget-min 10 --seeds 1 --plot docs/peers.png

Each tool runs in a fresh folder as a subprocess in its own session, killed (its process group,
by its id) when the budget is spent. What is compared is what a user gets: the test accuracy of
the best model so far by validation accuracy, against seconds since the command started (imports,
data loading and store set-up included). mnist-sweep's is read back from its Optuna study after
the run; the peers append one line per trained model (`peer_tools.Events`), and the seconds they
spent on the benchmark's own test evaluations are taken out of their clocks. Progress goes to
stderr; stdout carries only the JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Settings, clean_env, emit, header, log
from benchmarks.peer_tools import BATCH_SIZE, EPOCHS, VAL_SIZE
from benchmarks.sweeps import time_to_reach

TOOLS = ("mnist_sweep", "keras_tuner", "optuna")
TARGETS = (0.990, 0.993, 0.995)
MARKS_MIN = (10, 20, 30)  # the best test accuracy at these minutes

Curve = list[tuple[float, float]]  # (seconds since start, best-so-far test accuracy), ascending


# ---- pure functions: events -> curve -> figures ----------------------------------------------
def best_so_far(models: list[tuple[float, float, float]]) -> Curve:
    """(seconds, val, test) of finished models -> the steps of the best-by-validation's test."""
    curve: Curve = []
    best_val = float("-inf")
    for seconds, val, test in sorted(models):
        if val > best_val:
            best_val = val
            if not curve or curve[-1][1] != test:
                curve.append((round(seconds, 1), test))
    return curve


def value_at(curve: Curve, seconds: float, budget_s: float) -> float | None:
    """The best-so-far's test accuracy at `seconds` (None: past the budget, or nothing yet)."""
    if seconds > budget_s + 1e-9:
        return None
    reached = [test for s, test in curve if s <= seconds]
    return reached[-1] if reached else None


def figures(curve: Curve, budget_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {f"time_to_{t:.3f}_s": time_to_reach(curve, t) for t in TARGETS}
    out.update({f"best_test_at_{m}min": value_at(curve, 60.0 * m, budget_s) for m in MARKS_MIN})
    out["best_test_at_end"] = curve[-1][1] if curve else None
    return out


def summary(tool: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds; a seed that never reached a target counts as the budget (a bound)."""
    budget_s = lines[0]["settings"]["budget_s"]

    def median(key: str, missing: float | None) -> float | None:
        # .get: lines from before a target or mark was added lack it
        values = [ln.get(key) if ln.get(key) is not None else missing for ln in lines]
        values = [v for v in values if v is not None]
        return round(float(statistics.median(values)), 4) if values else None

    out: dict[str, Any] = {"measurement": "peers_summary", "tool": tool,
                           "seeds": [ln["seed"] for ln in lines], "settings": lines[0]["settings"]}
    for target in TARGETS:
        key = f"time_to_{target:.3f}_s"
        out[key + "_median"] = median(key, budget_s)
        out[key.replace("time_to", "seeds_reaching").removesuffix("_s")] = sum(
            ln.get(key) is not None for ln in lines)
    for key in (*(f"best_test_at_{m}min" for m in MARKS_MIN), "best_test_at_end",
                "trials_complete", "trials_pruned"):
        out[key + "_median"] = median(key, None)
    return out


# ---- running one tool ------------------------------------------------------------------------
def run_folder(tool: str, seed: int, keep: Path | None) -> contextlib.AbstractContextManager[str]:
    """A fresh folder for one run: a temporary one, or `keep`/<tool>-seed<N>, left for reading
    afterwards (its MLflow store, the sweep's own record)."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix=f"peers-{tool}-")
    folder = keep / f"{tool}-seed{seed}"
    folder.mkdir(parents=True)  # an earlier run's folder is not mixed into this one
    return contextlib.nullcontext(str(folder))


def run_tool(tool: str, seed: int, budget_s: float, epochs: int | None,
             limit_train: int | None, keep: Path | None = None) -> dict[str, Any]:
    """One tool's run in a fresh folder, killed at the budget; its curve and counts."""
    with run_folder(tool, seed, keep) as tmp:
        folder = Path(tmp)
        events = folder / "events.jsonl"
        if tool == "mnist_sweep":
            command = [sys.executable, "-m", "mnist_sweep", "-m", "sweep=cnn_search",
                       f"hydra.sweeper.sampler.seed={seed}"]
            command += [f"train.epochs={epochs}"] if epochs else []
            command += [f"data.limit_train={limit_train}"] if limit_train else []
        else:
            command = [sys.executable, "-m", "benchmarks.peer_tools", tool, "--events",
                       str(events), "--seed", str(seed),
                       "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"]
            command += ["--epochs", str(epochs)] if epochs else []
            command += ["--limit-train", str(limit_train)] if limit_train else []
        log(f"peers: {tool} seed {seed} for {budget_s:.0f} s")
        # the peers' script lives in this checkout, not in the installed package
        env = clean_env() if tool == "mnist_sweep" else clean_env(PYTHONPATH=str(ROOT))
        with open(folder / "output.log", "w") as output:
            start = time.time()
            proc = subprocess.Popen(command, cwd=folder, stdout=output, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
            try:
                returncode: int | None = proc.wait(timeout=budget_s)
            except subprocess.TimeoutExpired:
                returncode = None  # the budget ran out, as expected
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            wall = time.time() - start
        if returncode:  # a tool that crashed is a broken benchmark, not a slow tool
            tail = (folder / "output.log").read_text()[-3000:]
            raise RuntimeError(f"{tool} failed ({returncode}): {tail}")
        if tool == "mnist_sweep":
            models, pruned = study_models(folder / "multirun" / "cnn_search" / "optuna.db", start)
        else:
            models, pruned = event_models(events, start)
        return {"wall_s": round(wall, 1), "finished_in_budget": returncode == 0,
                "models": models, "trials_pruned": pruned}


def study_models(path: Path, start: float) -> tuple[list[tuple[float, float, float]], int]:
    """mnist-sweep's finished trials as (seconds since start, val, test), and the pruned count."""
    import optuna
    from optuna.trial import TrialState

    if not path.exists():
        return [], 0
    storage = f"sqlite:///{path}"
    trials = optuna.load_study(study_name="cnn_search", storage=storage).get_trials(deepcopy=False)
    models = [(t.datetime_complete.timestamp() - start, t.value, t.user_attrs["test_accuracy"])
              for t in trials
              if t.state == TrialState.COMPLETE and "test_accuracy" in t.user_attrs]
    return models, sum(t.state == TrialState.PRUNED for t in trials)


def event_models(path: Path, start: float) -> tuple[list[tuple[float, float, float]], int]:
    """A peer's trained models, its clock minus the benchmark's test evaluations before each."""
    if not path.exists():
        return [], 0
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    models = [(e["time"] - start - e["eval_s"], e["val"], e["test"])
              for e in events if e["state"] == "complete"]
    return models, sum(e["state"] == "pruned" for e in events)


def measure(tool: str, seed: int, budget_s: float, epochs: int | None,
            limit_train: int | None, keep: Path | None = None) -> dict[str, Any]:
    run = run_tool(tool, seed, budget_s, epochs, limit_train, keep)
    curve = best_so_far(run["models"])
    return {
        "measurement": "peers_time_to_accuracy", "tool": tool, "seed": seed,
        "settings": {"budget_s": budget_s, "epochs": epochs or EPOCHS, "batch_size": BATCH_SIZE,
                     "limit_train": limit_train,
                     "search_space": "sweeps/cnn_search.yaml (cnn_blocks)", "val_size": VAL_SIZE},
        **figures(curve, budget_s),
        "trials_complete": len(run["models"]), "trials_pruned": run["trials_pruned"],
        "wall_s": run["wall_s"], "finished_in_budget": run["finished_in_budget"],
        "curve": curve,
    }


# ---- the plot --------------------------------------------------------------------------------
def plot(lines: list[dict[str, Any]], path: Path, title: str) -> None:
    """Best-so-far test accuracy against wall minutes, a colour per tool, a dash per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(TOOLS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    styles = ("-", "--", ":", "-.")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for ln in lines:
        end_min = ln["wall_s"] / 60.0
        xs = [s / 60.0 for s, _ in ln["curve"]] + [end_min]
        ys = [test for _, test in ln["curve"]]
        if ys:
            ax.step(xs, [*ys, ys[-1]], where="post", color=colors[ln["tool"]],
                    linestyle=styles[ln["seed"] % len(styles)],
                    label=f"{ln['tool']} (seed {ln['seed']})")
    for target in TARGETS:
        ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
    if not any(ln["curve"] for ln in lines):
        ax.text(0.5, 0.5, "no tool finished a model within the budget", ha="center",
                transform=ax.transAxes)
    ax.set_xlim(0, max(ln["settings"]["budget_s"] for ln in lines) / 60.0)
    low = min((test for ln in lines for _, test in ln["curve"]), default=0.98)
    ax.set_ylim(max(0.95, min(low, 0.985)) - 0.002, 1.0)
    ax.set_xlabel("wall time since the command started (min)")
    ax.set_ylabel("test accuracy of the best-so-far by validation")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ---- CLI -------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=20.0, help="wall budget per tool run")
    parser.add_argument("--seeds", type=int, default=2, help="runs per tool")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed.. (add seeds to an earlier run's JSON lines)")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    parser.add_argument("--plot", type=Path, default=Path("peers_time_to_accuracy.png"))
    parser.add_argument("--epochs", type=int,
                        help="override cnn_search's 10 epochs (quick runs, tests)")
    parser.add_argument("--limit-train", type=int, help="train on a slice (quick runs, tests)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run each tool in DIR/<tool>-seed<N> and keep it (MLflow store, "
                             "logs) instead of a temporary folder")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSONL",
                        help="run nothing: the summaries and the plot of earlier runs' lines, "
                             "together (e.g. seed 0 of one day, seed 1 of another)")
    args = parser.parse_args(argv)
    if args.merge:
        if missing := [str(p) for p in args.merge if not p.is_file()]:
            parser.error(f"--merge: no such file: {', '.join(missing)}")
        lines = merged(args.merge)
        if not lines:
            parser.error(f"no peers_time_to_accuracy lines in {', '.join(map(str, args.merge))}")
        finish(lines, args.plot, f"cnn_search space, {lines[0]['settings']['budget_s'] / 60:g} "
               f"min a run, {os.cpu_count()} cores, merged")
        return 0
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.first_seed < 0:
        parser.error(f"--first-seed {args.first_seed}: a seed is an int >= 0")
    if unknown := set(tools) - set(TOOLS):
        parser.error(f"unknown tool(s) {sorted(unknown)}; choose from {', '.join(TOOLS)}")
    peers_versions = {p: _version(p) for p in ("keras-tuner", "optuna-integration")}
    first = header("peers", Settings())
    emit({**first, "versions": {**first["versions"], **peers_versions}, "settings": {
        "budget_min": args.budget_min, "seeds": args.seeds, "first_seed": args.first_seed,
        "tools": tools,
        "epochs": args.epochs, "limit_train": args.limit_train, "plot": str(args.plot)}})
    budget_s = 60.0 * args.budget_min
    lines: list[dict[str, Any]] = []
    failed = False
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        # alternate: the tools' order rotates with the seed, so none always runs first
        for tool in tools[seed % len(tools):] + tools[:seed % len(tools)]:
            try:
                lines.append(measure(tool, seed, budget_s, args.epochs, args.limit_train,
                                     args.keep))
                emit(lines[-1])
            except Exception as exc:  # one broken tool must not lose the others' figures
                failed = True
                emit({"measurement": "peers_time_to_accuracy", "tool": tool, "seed": seed,
                      "error": f"{type(exc).__name__}: {exc}"[-3000:]})
    if lines:
        finish(lines, args.plot, f"cnn_search space, {args.budget_min:g} min a run, "
               f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    return 1 if failed else 0


def finish(lines: list[dict[str, Any]], plot_path: Path, title: str) -> None:
    """Each tool's summary over its seeds, then the plot of every run."""
    for tool in TOOLS:
        if mine := [ln for ln in lines if ln["tool"] == tool]:
            emit(summary(tool, mine))
    plot(lines, plot_path, title)
    log(f"plot: {plot_path}")


def merged(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The runs recorded in earlier runs' JSON lines, one per tool and seed (the last wins)."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for path in paths:
        for text in path.read_text().splitlines():
            line = json.loads(text) if text.strip() else {}
            if line.get("measurement") == "peers_time_to_accuracy" and "error" not in line:
                runs[(line["tool"], line["seed"])] = line
    return list(runs.values())


if __name__ == "__main__":
    sys.exit(main())
