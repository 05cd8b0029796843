"""Scaling out: the same CNN sweep on a one-node and on a two-node Ray cluster, one CPU per node.

Each cluster is real (`ray start --head`, then `ray start --address` for the second node, on
this machine's outward address), started before the clock runs; the sweep is the command a user
runs (`hydra/launcher=ray` at the head's address, `hydra.sweeper.n_jobs=2` on both: on one
node the second worker task waits for the node's CPU, and starts once the budget is spent). Each
worker task holds its node's one CPU and its TensorFlow runs one intra-op and one inter-op thread
(`OPTUNA_MLFLOW_CPUS_PER_WORKER`). The same trials run on both (grid over seeds), into SQLite
stores under a temp folder. Trials per hour three ways: steady (once every worker runs: the
mean trial time after each worker's first trial, times the workers), over the study's span
(first trial's start to last trial's end: includes the second node's worker start-up), and over
the whole command's wall time (includes the one node's idle second worker starting at the end).
`ratio` = two nodes' steady trials per hour / one node's, what a node adds to a long sweep: on
a machine with two idle cores the goal is >= 1.7; on a loaded one the nodes share what is left,
and `load_avg_1m` says how much that was.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, log, ratio
from benchmarks.sweeps import Sweeps, _public

GOAL = 1.7


def measure_scaling(settings: Settings) -> Iterator[dict[str, Any]]:
    if importlib.util.find_spec("ray") is None:
        yield {"measurement": "cluster_scaling", "skipped": "Ray is not installed "
               "(pip install 'mnist-sweep[ray]')"}
        return
    from hydra_plugins.optuna_mlflow_sweeper._testing.ray_cluster import (
        RayCluster,
        outward_address,
    )

    n = settings.cluster_trials
    common = ["model=cnn", f"train.epochs={settings.cluster_epochs}",
              f"data.limit_train={settings.cluster_limit or 'null'}",
              "hydra/sweeper=optuna_mlflow", "hydra/sweeper/sampler=grid",
              "hydra.sweeper.direction=maximize", f"hydra.sweeper.n_trials={n}",
              f"train.seed=choice({','.join(str(i) for i in range(n))})",
              "tracking.log_model=false", "tracking.log_plots=false"]
    sides: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-bench-") as tmp:
        sweeps = Sweeps(Path(tmp))
        for nodes in (1, 2):
            log(f"cluster: {nodes} node(s) of 1 CPU, {n} CNN trials")
            cluster = RayCluster(num_cpus=1, num_gpus=0, host=outward_address())
            try:
                for _ in range(nodes - 1):
                    cluster.add_node(num_cpus=1)
                stats = sweeps.run(f"cnn-{nodes}-nodes",
                                   [*common, "hydra.sweeper.n_jobs=2", *cluster.launcher()], 2)
            finally:
                cluster.close()
            if stats["n_complete"] != n:
                raise RuntimeError(f"{nodes} node(s): {stats['n_complete']}/{n} trials complete")
            span = max(seconds for seconds, _ in stats["finished"])
            steady = stats["trial_s_after_first_batch"]  # each worker's trials after its first
            sides[nodes] = {**_public(stats), "nodes": nodes, "span_s": round(span, 2),
                            "trials_per_hour": steady and round(3600 * nodes / steady, 1),
                            "trials_per_hour_span": round(3600 * n / span, 1),
                            "trials_per_hour_wall": round(3600 * n / stats["wall_s"], 1)}
    one, two = sides[1], sides[2]
    yield {
        "measurement": "cluster_scaling",
        "settings": {"backend": "tensorflow", "model": "cnn", "epochs": settings.cluster_epochs,
                     "batch_size": 32, "limit_train": settings.cluster_limit, "n_trials": n,
                     "cpus_per_node": 1, "workers": "Ray tasks, one per node"},
        "baseline": one,
        "ours": two,
        "ratio": ratio(two["trials_per_hour"], one["trials_per_hour"]),
        "ratio_is": "two nodes' steady trials/hour / one node's (workers' start-up left out)",
        "span_ratio": ratio(two["trials_per_hour_span"], one["trials_per_hour_span"]),
        "wall_ratio": ratio(two["trials_per_hour_wall"], one["trials_per_hour_wall"]),
        "goal": f">= {GOAL}",
    }
