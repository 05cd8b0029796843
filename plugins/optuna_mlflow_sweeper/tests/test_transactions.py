"""The storage round trips of a trial, counted by a real PostgreSQL server.

Each storage call is a transaction (a round trip, and a commit, on a shared database), so what the
sweeper adds to Optuna's own ask and tell shows here. Two sweeps of the toy app (random sampler,
one param, MLflow on, an objective that writes nothing itself) into fresh databases; the
difference of their counts over the difference of their trials is the cost of one trial, without
the fixed cost of a command.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import optuna
import pytest
from toyapp import sweep

from hydra_plugins.optuna_mlflow_sweeper._testing.servers import Postgres

# Optuna's own `study.optimize` makes 6 per trial of one param (ask: waiting trials, create,
# read, param; tell: read, state), 8 with heartbeats (a beat, the stale-trial check)
MAX_PER_TRIAL = 8
SMALL, LARGE = 3, 9


def transactions(tmp_path: Path, env: dict[str, str], postgres: Postgres, n: int) -> int:
    """Transactions of a whole sweep of `n` trials, in a database of its own."""
    name = f"txn_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    before = postgres.transactions(name)
    # a process of its own: the server counts a connection's transactions for sure once it ends
    sweep(tmp_path, env, "hydra/sweeper/sampler=random", "x=interval(-5,5)",
          f"hydra.sweeper.n_trials={n}", f"hydra.sweeper.storage={url}",
          "hydra.sweeper.progress=false", "record_pid=false", sweep_dir=name, own_process=True)
    count = postgres.transactions(name) - before  # before reading the study back
    trials = optuna.load_study(study_name="app", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * n
    return count


@pytest.mark.slow
def test_a_trial_costs_at_most_eight_storage_transactions(
    tmp_path: Path, env: dict[str, str], postgres: Postgres
) -> None:
    small = transactions(tmp_path, env, postgres, SMALL)
    large = transactions(tmp_path, env, postgres, LARGE)
    per_trial = (large - small) / (LARGE - SMALL)
    assert per_trial <= MAX_PER_TRIAL, (
        f"{per_trial:g} storage transactions per trial ({small} for {SMALL} trials, {large} for "
        f"{LARGE}); at most {MAX_PER_TRIAL}")
