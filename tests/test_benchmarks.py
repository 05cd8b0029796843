"""The speed benchmark's smallest run, for real, and the per-trial thread settings.

Structure and sanity only (positive, finite ratios; both training paths reach the same accuracy):
wall-clock figures depend on the machine and its load, so no test asserts a speed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from benchmarks import peer_tools, peers
from benchmarks.sweeps import time_to_reach
from tests.helpers import ROOT, compose_config

SETTINGS_KEYS = {"backend", "model", "epochs", "batch_size", "limit_train"}


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def smallest_bench(measurement: str, *extra: str) -> list[dict]:
    """The results of one measurement of the smallest run (its JSON lines after the header), each
    measurement in its own command so that the two run side by side under `pytest -n 2`."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", measurement,
         "--backends", "tensorflow", "--limit-train", "1000", "--epochs", "2", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout is JSON lines only
    header, *results = lines
    assert header["measurement"] == "header"
    assert header["machine"]["cpu_count"] >= 1 and header["versions"]["tensorflow"]
    assert not [r for r in results if "error" in r]
    return results


@pytest.mark.slow
def test_smallest_fit_bench_prints_sane_json_lines(mnist_cache):
    results = smallest_bench("fit")
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


@pytest.mark.slow
def test_smallest_overhead_bench_prints_sane_json_lines(mnist_cache):
    # one warm trial after the cold one (3 by default): the warm line's shape is the same
    results = smallest_bench("overhead", "--overhead-repeats", "1")
    overhead = {r["process"]: r for r in results if r["measurement"] == "trial_overhead"}
    assert set(overhead) == {"cold", "warm"}
    assert overhead["warm"]["settings"]["trials"] == 1
    for r in overhead.values():
        assert SETTINGS_KEYS <= set(r["settings"]) and r["settings"]["epochs"] == 5
        assert _positive(r["baseline"]["train_time_s"]) and _positive(r["ours"]["trial_wall_s"])
        assert r["ratio"] >= 1 and _positive(r["overhead_s"])
        assert 0 < r["overhead_fraction"] < 1
        assert {"train", "evaluate", "log_plots", "log_model"} <= set(r["phases_s"])
    # the store a sweep opens before its first trial is timed apart from that trial
    assert _positive(overhead["cold"]["store_before_run_s"])


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


PEERS_BUDGET_MIN = 0.2  # 12 s a tool: each starts, runs and is stopped at the budget


@pytest.mark.slow
@pytest.mark.parametrize("tool", peers.TOOLS)
def test_peers_bench_prints_its_lines_and_a_plot(mnist_cache, tmp_path, tool):
    """The peers benchmark at a tiny budget on a data slice, one tool a test (`--tools`): the
    tool runs, is stopped at the budget or finishes, and reports the figures every tool reports;
    the plot is written."""
    plot = tmp_path / "peers.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers", "--budget-min", str(PEERS_BUDGET_MIN),
         "--seeds", "1", "--first-seed", "1", "--tools", tool, "--epochs", "2",
         "--limit-train", "2000", "--plot", str(plot), "--keep", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    header, *results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert header["measurement"] == "header"
    assert header["settings"]["budget_min"] == PEERS_BUDGET_MIN
    assert header["settings"]["first_seed"] == 1 and header["settings"]["tools"] == [tool]
    [r] = [r for r in results if r["measurement"] == "peers_time_to_accuracy"]
    [summary] = [r for r in results if r["measurement"] == "peers_summary"]
    assert r["tool"] == summary["tool"] == tool
    assert r["seed"] == 1  # --first-seed: seeds to add to an earlier run's lines
    # --keep: the run's folder stays, with what the tool printed (on a loaded machine a tool
    # stopped at the budget may not have printed its first line yet: seen at load ~4)
    output = tmp_path / "runs" / f"{tool}-seed1" / "output.log"
    assert output.exists() and (output.stat().st_size > 0 or not r["trials_complete"])
    assert {"time_to_0.990_s", "time_to_0.993_s", "best_test_at_10min", "best_test_at_20min",
            "trials_complete", "trials_pruned", "curve"} <= set(r)
    assert r["best_test_at_10min"] is None  # past the budget: not measured, not guessed
    assert 0 < r["wall_s"] <= 60 * PEERS_BUDGET_MIN + 30  # stopped at the budget, or done
    assert r["best_test_at_end"] == (r["curve"][-1][1] if r["curve"] else None)
    assert all(0.0 <= test <= 1.0 for _, test in r["curve"])
    # each step of the curve is a finished model; the summary reports the same end
    assert len(r["curve"]) <= r["trials_complete"]
    end = summary["best_test_at_end_median"]
    assert end == (None if r["best_test_at_end"] is None
                   else pytest.approx(r["best_test_at_end"], abs=1e-4))
    # Whether a model finishes within the budget depends on the machine's load: the figures for
    # finished models are checked by the tests of the pure functions below.
    assert plot.stat().st_size > 10_000


def test_the_peers_train_as_cnn_search_does(mnist_cache):
    """The peers' settings are written out once in peer_tools: they must follow cnn_search's."""
    train = compose_config(["sweep=cnn_search"]).train
    assert (train.batch_size, train.epochs) == (peer_tools.BATCH_SIZE, peer_tools.EPOCHS)
    assert train.lr_schedule.name == "cosine"
    assert train.lr_schedule.final_fraction == peer_tools.FINAL_FRACTION


@pytest.mark.parametrize(("models", "curve"), [
    ([], []),
    # a later model better on validation replaces the best even when its test is lower
    ([(30.0, 0.95, 0.951), (10.0, 0.90, 0.905), (50.0, 0.97, 0.948), (70.0, 0.96, 0.999)],
     [(10.0, 0.905), (30.0, 0.951), (50.0, 0.948)]),
])
def test_peers_best_so_far_follows_validation_not_test(models, curve):
    from benchmarks.peers import best_so_far

    assert best_so_far(models) == curve


def test_peers_figures_read_targets_and_marks_off_the_curve():
    from benchmarks.peers import figures

    curve = [(100.0, 0.985), (400.0, 0.9931), (900.0, 0.9952)]
    got = figures(curve, budget_s=1200.0)
    assert got["time_to_0.990_s"] == 400.0 and got["time_to_0.993_s"] == 400.0
    assert got["time_to_0.995_s"] == 900.0
    assert got["best_test_at_10min"] == 0.9931 and got["best_test_at_20min"] == 0.9952
    assert got["best_test_at_30min"] is None  # past the budget
    assert got["best_test_at_end"] == 0.9952
    short = figures([(100.0, 0.985)], budget_s=600.0)
    assert short["time_to_0.990_s"] is None and short["best_test_at_20min"] is None
    assert short["best_test_at_10min"] == 0.985


def test_peers_summary_takes_medians_and_counts_a_miss_as_the_budget():
    from benchmarks.peers import summary

    def line(seed, t99, end, complete):
        return {"seed": seed, "settings": {"budget_s": 600.0}, "time_to_0.990_s": t99,
                "time_to_0.993_s": None, "best_test_at_10min": end, "best_test_at_20min": None,
                "best_test_at_end": end, "trials_complete": complete, "trials_pruned": 0}

    got = summary("optuna", [line(0, 100.0, 0.991, 3), line(1, None, 0.989, 5)])
    assert got["time_to_0.990_s_median"] == 350.0 and got["seeds_reaching_0.990"] == 1
    assert got["time_to_0.993_s_median"] == 600.0 and got["seeds_reaching_0.993"] == 0
    assert got["best_test_at_end_median"] == 0.99 and got["trials_complete_median"] == 4.0
    assert got["best_test_at_20min_median"] is None
    # lines from before the 99.5% target and the 30-minute mark lack them: not reached
    assert got["seeds_reaching_0.995"] == 0 and got["best_test_at_30min_median"] is None


def test_peers_merge_summarizes_the_seeds_of_earlier_runs_together(tmp_path, capsys):
    from benchmarks import peers

    def run(tool, seed, t99, curve):
        return {"measurement": "peers_time_to_accuracy", "tool": tool, "seed": seed,
                "settings": {"budget_s": 600.0}, "time_to_0.990_s": t99, "time_to_0.993_s": None,
                "best_test_at_10min": curve[-1][1], "best_test_at_20min": None,
                "best_test_at_end": curve[-1][1], "trials_complete": len(curve),
                "trials_pruned": 0, "wall_s": 600.0, "curve": curve}

    first, second = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl"
    first.write_text("\n".join(json.dumps(x) for x in [
        {"measurement": "header"}, run("optuna", 0, 100.0, [[100.0, 0.991]]),
        run("optuna", 1, None, [[50.0, 0.98]])]) + "\n")
    second.write_text("\n".join(json.dumps(x) for x in [  # seed 1 again: the later one counts
        run("optuna", 1, 300.0, [[300.0, 0.992]]),
        {"measurement": "peers_time_to_accuracy", "tool": "keras_tuner", "seed": 1,
         "error": "RuntimeError: ..."}]) + "\n")
    plot = tmp_path / "merged.png"
    assert peers.main(["--merge", str(first), str(second), "--plot", str(plot)]) == 0
    [got] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert got["tool"] == "optuna" and got["seeds"] == [0, 1]
    assert got["time_to_0.990_s_median"] == 200.0 and got["seeds_reaching_0.990"] == 2
    assert plot.stat().st_size > 10_000
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"measurement": "header"}) + "\n")
    for wrong in (empty, tmp_path / "missing.jsonl"):  # an error that names it, not a plot
        with pytest.raises(SystemExit):
            peers.main(["--merge", str(wrong), "--plot", str(plot)])
        assert wrong.name in capsys.readouterr().err


def test_peers_events_take_the_benchmarks_test_evaluations_off_the_clock(tmp_path):
    from benchmarks.peers import event_models

    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"time": 1000.0, "eval_s": 0.0, "state": "started"},
        {"time": 1100.0, "eval_s": 5.0, "state": "complete", "val": 0.98, "test": 0.97},
        {"time": 1150.0, "eval_s": 5.0, "state": "pruned"},
        {"time": 1200.0, "eval_s": 12.0, "state": "complete", "val": 0.99, "test": 0.985},
    ]) + "\n")
    assert event_models(events, start=990.0) == (
        [(105.0, 0.98, 0.97), (198.0, 0.99, 0.985)], 1)
    assert event_models(tmp_path / "none.jsonl", start=0.0) == ([], 0)


@pytest.mark.parametrize(("cmdline", "kind"), [
    ("/v/bin/python -m hydra_plugins.optuna_mlflow_sweeper._impl.report_process",
     "sweep report helper"),
    ("/v/bin/python /r/plugins/optuna_mlflow_sweeper/tests/apps/toy/app.py -m x=1",
     "toy app command"),
    ("/v/bin/python -m mnist_sweep -m sweep=quickstart", "mnist-sweep command"),
    ("/v/bin/python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=6)",
     "sweep worker (local process)"),
    ("/v/bin/python /v/bin/mlflow server --host 127.0.0.1", "mlflow server"),
    ("sleep 1", "other"),
])
def test_suite_cpu_kinds_name_what_a_process_is(cmdline, kind):
    from benchmarks.proc_cpu import kind_of

    assert kind_of(cmdline) == kind


def spent(cpu) -> float:
    return cpu.by_kind().get("other", {}).get("cpu_s", 0.0)


def test_suite_cpu_counts_a_process_a_test_started_even_when_it_is_killed(request):
    """A real child that spins, then is SIGKILLed: its CPU is read from /proc while it runs and
    put down to this test's file (PYTEST_CURRENT_TEST is inherited)."""
    import signal
    import time

    from benchmarks.proc_cpu import ProcessCpu

    with ProcessCpu(interval=0.1) as cpu:
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and spent(cpu) < 0.3:  # bounded, not a timer
                time.sleep(0.1)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert cpu.by_kind()["other"]["cpu_s"] >= 0.3
    assert cpu.by_test_file(5)[request.node.nodeid.split("::")[0]] >= 0.3


# a child that loads TensorFlow's own library (without TensorFlow's Python imports: 0.1 s), then
# waits to be stopped
LOADS_TENSORFLOW = """
import ctypes, importlib.util, pathlib, sys, time
folder = pathlib.Path(importlib.util.find_spec("tensorflow").origin).parent
ctypes.CDLL(str(next(folder.glob("libtensorflow_framework.so*"))))
print("loaded", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("loads", [True, False])
def test_suite_cpu_marks_the_processes_that_load_tensorflow(loads):
    import signal

    from benchmarks.proc_cpu import ProcessCpu

    code = LOADS_TENSORFLOW if loads else LOADS_TENSORFLOW.replace("ctypes.CDLL", "str")
    with ProcessCpu(interval=0.1) as cpu:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "loaded\n"
            # marked within a few reads; one that does not load it, read 5 times meanwhile
            deadline = time.monotonic() + (30 if loads else 0.5)
            while time.monotonic() < deadline and not cpu.tensorflow()["processes"]:
                time.sleep(0.1)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert cpu.tensorflow()["processes"] == int(loads)
    assert cpu.by_kind()["other"]["with_tensorflow"] == int(loads)
