"""Storage round trips per trial, counted by a real PostgreSQL server, against plain Optuna.

The sweeper tests' toy app (one param, random sampler, MLflow on SQLite, an objective that writes
nothing itself) and a plain `study.optimize` of the same objective, each with a small and a large
number of trials into a fresh database; the server's count of transactions
(`pg_stat_database.xact_commit + xact_rollback`) over the difference of trials is the cost of
one trial. Plain Optuna runs twice: as it comes, and with heartbeats (a beat and a stale-trial
check per trial), which the sweeper keeps on by default.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, clean_env, log
from benchmarks.fixed_costs import commands
from benchmarks.sweeps import Sweeps

GOAL = 8  # transactions per trial

PLAIN = """
import sys, optuna
from optuna.storages import RDBStorage
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, n, beat = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
storage = RDBStorage(url, heartbeat_interval=60) if beat else url
study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler())
study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2, n_trials=n)
"""


def measure_transactions(settings: Settings) -> Iterator[dict[str, Any]]:
    from hydra_plugins.optuna_mlflow_sweeper._testing.servers import Postgres, pg_bindir

    counts = settings.sweeper_trials
    base = {"app": "toy f(x), one param, no training", "sampler": "random",
            "storage": "postgresql", "mlflow": "sqlite", "trials": list(counts)}
    if pg_bindir() is None:
        yield {"measurement": "storage_transactions", "settings": base,
               "skipped": "PostgreSQL is not installed (apt-get install postgresql)"}
        return
    server = Postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
            sweeps = Sweeps(Path(tmp))

            def count(side: str, n: int) -> int:
                name = f"{side}_{n}_{uuid.uuid4().hex[:8]}"
                url = server.create_database(name)
                before = server.transactions(name)
                if side == "sweeper":
                    sweeps.wall(name, [*commands("mlflow_on", n, Path(tmp) / name),
                                       f"hydra.sweeper.storage={url}", "record_pid=false"])
                else:
                    log(f"transactions: plain Optuna ({side}), {n} trials")
                    subprocess.run([sys.executable, "-c", PLAIN, url, str(n),
                                    "1" if side == "plain_heartbeat" else "0"],
                                   check=True, env=clean_env(), timeout=600)
                return server.transactions(name) - before

            per_trial = {}
            for side in ("sweeper", "plain", "plain_heartbeat"):
                small, large = (count(side, n) for n in counts)
                per_trial[side] = round((large - small) / (counts[1] - counts[0]), 2)
    finally:
        server.close()
    yield {
        "measurement": "storage_transactions",
        "settings": base,
        "baseline": {"what": "plain Optuna study.optimize",
                     "per_trial": per_trial["plain"],
                     "per_trial_with_heartbeat": per_trial["plain_heartbeat"]},
        "ours": {"per_trial": per_trial["sweeper"]},
        "ratio": round(per_trial["sweeper"] / per_trial["plain"], 3),
        "ratio_is": f"ours / plain Optuna's transactions per trial (goal: ours <= {GOAL})",
    }
