"""The speed benchmark's smallest run, for real, and the per-trial thread settings.

Structure and sanity only (positive, finite ratios; both training paths reach the same accuracy):
wall-clock figures depend on the machine and its load, so no test asserts a speed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from benchmarks.sweeps import time_to_reach
from tests.conftest import ROOT

SETTINGS_KEYS = {"backend", "model", "epochs", "batch_size", "limit_train"}


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_smallest_bench_prints_sane_json_lines(mnist_cache):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "fit,overhead",
         "--backends", "tensorflow", "--limit-train", "1000", "--epochs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout is JSON lines only
    header, *results = lines
    assert header["measurement"] == "header"
    assert header["machine"]["cpu_count"] >= 1 and header["versions"]["tensorflow"]
    assert not [r for r in results if "error" in r]

    speedups = {r["settings"]["model"]: r for r in results if r["measurement"] == "epoch_speedup"}
    assert set(speedups) == {"dense", "cnn"}
    for r in speedups.values():
        assert SETTINGS_KEYS <= set(r["settings"]) and r["settings"]["backend"] == "tensorflow"
        assert r["settings"]["limit_train"] == 1000 and r["settings"]["epochs"] == 2
        assert _positive(r["ratio"]) and _positive(r["first_epoch_ratio"])
        for side in (r["baseline"], r["ours"]):
            assert _positive(side["s_per_epoch"]) and _positive(side["first_epoch_s"])
            assert side["test_accuracy"] > 0.3  # learned: chance is 0.1
            assert side["s_per_epoch_rounds"] == [side["s_per_epoch"]]  # one round when small
        assert r["baseline"]["steps_per_execution"] == 1 and r["ours"]["steps_per_execution"] > 1
        # Same weights, data, seed and batches: the same math, whatever the speed.
        assert abs(r["val_accuracy_diff"]) <= 0.02 and abs(r["test_accuracy_diff"]) <= 0.02

    overhead = {r["process"]: r for r in results if r["measurement"] == "trial_overhead"}
    assert set(overhead) == {"cold", "warm"}
    for r in overhead.values():
        assert SETTINGS_KEYS <= set(r["settings"]) and r["settings"]["epochs"] == 5
        assert _positive(r["baseline"]["train_time_s"]) and _positive(r["ours"]["trial_wall_s"])
        assert r["ratio"] >= 1 and _positive(r["overhead_s"])
        assert 0 < r["overhead_fraction"] < 1
        assert {"train", "evaluate", "log_plots", "log_model"} <= set(r["phases_s"])


def test_time_to_reach_is_the_first_finished_trial_at_the_target():
    finished = [(10.0, 0.80), (25.0, 0.91), (40.0, 0.95)]
    assert time_to_reach(finished, 0.90) == 25.0
    assert time_to_reach(finished, 0.95) == 40.0
    assert time_to_reach(finished, 0.99) is None


def test_pruning_lines_compare_tpe_against_the_random_searchs_best():
    from benchmarks.sweeps import _pruning_line, _pruning_summary

    def stats(wall, finished, pruned=0):
        return {"wall_s": wall, "best_value": max(v for _, v in finished), "n_pruned": pruned,
                "finished": finished}

    random = stats(100.0, [(20.0, 0.95), (50.0, 0.98), (90.0, 0.97)])
    hit = _pruning_line({"sampler_seed": 0}, random, stats(80.0, [(25.0, 0.985)], pruned=4))
    assert hit["target"] == 0.98 and hit["ours"]["time_to_target_s"] == 25.0
    assert hit["ratio"] == 4.0 and hit["time_to_target_ratio"] == 2.0  # 100/25 and 50/25
    assert hit["wall_ratio"] == 1.25 and hit["best_value_diff"] == 0.005
    miss = _pruning_line({"sampler_seed": 1}, random, stats(60.0, [(30.0, 0.97)]))
    assert miss["ratio"] is None and "finished" not in miss["ours"]
    summary = _pruning_summary({}, [hit, miss, hit])
    assert summary["seeds_reaching_target"] == 2 and summary["n_pruned"] == [4, 0, 4]
    assert summary["ratio"] == 4.0 and summary["settings"]["sampler_seeds"] == [0, 1, 0]
    assert _pruning_summary({}, [hit, miss])["ratio"] == 2.0  # a miss counts as 0
