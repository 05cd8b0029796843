"""What the sweeper itself costs, against Hydra's basic sweeper, on a trivial objective.

The sweeper tests' toy app (f(x, y) = (x - 2)^2 + (y + 1)^2, no training) swept as whole
commands: Hydra's basic sweeper over a list of x, and `hydra/sweeper=optuna_mlflow` with the
random sampler, SQLite storage, MLflow on (a ready store, as from a user's earlier sweep) and off.
Each side runs a small and a large number of trials; the difference gives the cost per trial, the
rest the fixed cost per command (imports, stores, parent run, the end-of-sweep record). Rounds
alternate the sides so a slow spell of a shared machine hits all of them; medians are reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Settings
from benchmarks.sweeps import Sweeps

APP = ROOT / "plugins" / "optuna_mlflow_sweeper" / "tests" / "apps" / "toy" / "app.py"
PER_TRIAL_GOAL = 1.2  # ours / basic, seconds per trial
FIXED_GOAL_S = 2.0  # ours - basic, seconds per command, MLflow on


def commands(side: str, n: int, sweep_dir: Path) -> list[str]:
    """The command line of one side for `n` trials."""
    common = [sys.executable, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}"]
    if side == "basic":
        return [*common, f"x=range(0,{n})"]
    ours = [*common, "hydra/sweeper=optuna_mlflow", "hydra/sweeper/sampler=random",
            "x=interval(-5,5)", f"hydra.sweeper.n_trials={n}", "hydra.sweeper.progress=false"]
    return ours if side == "mlflow_on" else [*ours, "hydra.sweeper.mlflow.enabled=false"]


def split(walls: dict[int, float]) -> tuple[float, float]:
    """(seconds per trial, fixed seconds per command) from the walls of two trial counts."""
    (n1, w1), (n2, w2) = sorted(walls.items())
    per_trial = (w2 - w1) / (n2 - n1)
    return per_trial, w1 - n1 * per_trial


def measure_sweeper_cost(settings: Settings) -> Iterator[dict[str, Any]]:
    sides = ("basic", "mlflow_on", "mlflow_off")
    counts = settings.sweeper_trials
    rounds: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
        sweeps = Sweeps(Path(tmp))
        for r in range(settings.sweeper_rounds):
            walls: dict[str, dict[int, float]] = {side: {} for side in sides}
            for n in counts:
                for side in sides:
                    name = f"{side}-{n}-{r}"
                    walls[side][n] = sweeps.wall(name, commands(side, n, Path(tmp) / name))
            rounds.append({side: split(walls[side]) for side in sides})
    median = {side: tuple(statistics.median(rnd[side][i] for rnd in rounds) for i in (0, 1))
              for side in sides}
    basic_trial, basic_fixed = median["basic"]
    for side in ("mlflow_on", "mlflow_off"):
        trial_s, fixed_s = median[side]
        yield {
            "measurement": "sweeper_cost",
            "settings": {"app": "toy f(x, y), no training", "sampler": "random",
                         "storage": "sqlite", "mlflow": side == "mlflow_on",
                         "trials": list(counts), "rounds": settings.sweeper_rounds},
            "baseline": {"what": "hydra basic sweeper", "trial_s": round(basic_trial, 4),
                         "fixed_s": round(basic_fixed, 3)},
            "ours": {"trial_s": round(trial_s, 4), "fixed_s": round(fixed_s, 3)},
            "ratio": round(trial_s / basic_trial, 3) if basic_trial > 0 else None,
            "ratio_is": "ours s/trial / basic s/trial (goal <= 1.2)",
            "fixed_diff_s": round(fixed_s - basic_fixed, 3),
            "fixed_diff_is": "ours fixed s/command - basic's (goal <= 2 s with MLflow on)",
            "rounds_ratio": [round(rnd[side][0] / rnd["basic"][0], 3) if rnd["basic"][0] > 0
                             else None for rnd in rounds],
            "rounds_fixed_diff_s": [round(rnd[side][1] - rnd["basic"][1], 3) for rnd in rounds],
        }
