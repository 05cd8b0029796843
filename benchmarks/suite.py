"""The test suite's time against a fixed yardstick measured on the same machine in the same call.

The yardstick is the notebook's dense net (784 -> 16 sigmoid -> 10 softmax), 3 epochs of plain
Keras `fit` on the 55,000 training digits at batch 32, as the notebook does it (float64 pixels,
the 5,000 validation digits scored each epoch): what "this machine's speed" means for the
suite's goals (issue 29: the README's test command within 28x of it, the quick tier within 5x).
Each tier runs as its own pytest process from the checkout; `--busy` keeps one core busy with a
spinning process meanwhile (the suite must pass on a loaded machine too). Prints JSON lines:

    python -m benchmarks.suite                 # yardstick, quick tier, whole suite
    python -m benchmarks.suite --tiers quick   # yardstick and the quick tier only
    python -m benchmarks.suite --busy          # with one core kept busy
    python -m benchmarks.suite --cpu           # and where each tier's CPU went (proc_cpu.py)

With `--cpu`, a tier's line also counts the processes that loaded TensorFlow and what starting
TensorFlow costs one of them here (`import keras`, then one op): their product is CPU the tier
spends before any of those processes trains.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.proc_cpu import ProcessCpu

TIERS = {  # name -> (pytest arguments, goal: at most this many yardsticks)
    "quick": (["-m", "not slow", "-n", "2"], 5.0),
    "suite": (["-n", "2"], 28.0),
}
YARDSTICK = """
import os, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
from mnist_sweep.data.mnist import load_mnist
m = load_mnist()
x = m.x_train / 255.0  # as the notebook scales: float64
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(shape=(28, 28)), keras.layers.Flatten(),
                          keras.layers.Dense(16, activation="sigmoid"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x[5000:], m.y_train[5000:], epochs=3, batch_size=32, shuffle=True,
          validation_data=(x[:5000], m.y_train[:5000]), verbose=0)
print(time.perf_counter() - start)
"""


TENSORFLOW_START = """
import os, resource
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
keras.ops.convert_to_tensor(1.0)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_utime + usage.ru_stime)
"""


@functools.cache
def tensorflow_start() -> float:
    """CPU seconds of a fresh process that imports Keras (on TensorFlow) and runs one op;
    measured once per call of the benchmark, whatever the number of tiers."""
    out = subprocess.run([sys.executable, "-c", TENSORFLOW_START], cwd=ROOT, check=True,
                         text=True, capture_output=True, timeout=300).stdout
    return float(out.strip().splitlines()[-1])


def yardstick() -> float:
    """Seconds of the yardstick's `fit` (imports and data loading not counted)."""
    out = subprocess.run([sys.executable, "-c", YARDSTICK], cwd=ROOT, check=True, text=True,
                         capture_output=True, timeout=900).stdout
    return float(out.strip().splitlines()[-1])


@contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """One process spinning on one core while inside (stopped by its pid)."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.send_signal(signal.SIGKILL)
        spinner.wait(timeout=30)


def run_tier(name: str, extra: Sequence[str], log: Path | None, cpu: bool) -> dict[str, Any]:
    """One pytest process of the tier: its wall seconds, exit code, summary line and, with
    xdist, when each worker reported its last test (seconds from the start: the balance); with
    `cpu`, the CPU seconds of its processes by kind and by the test file that started them."""
    args, goal = TIERS[name]
    start = time.perf_counter()
    ends: dict[str, float] = {}
    lines: list[str] = []
    with ProcessCpu() if cpu else contextlib.nullcontext() as sampled, subprocess.Popen(
            [sys.executable, "-m", "pytest", *args, "-v", *extra], cwd=ROOT,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            worker = re.match(r"\[(gw\d+)\] ", line)
            if worker:
                ends[worker.group(1)] = round(time.perf_counter() - start, 1)
    wall = time.perf_counter() - start
    if log is not None:
        log.write_text("".join(lines))
    summary = next((x.strip() for x in reversed(lines) if x.startswith("=")), "")
    line = {"tier": name, "wall_s": round(wall, 1), "rc": proc.returncode, "summary": summary,
            "worker_ends_s": ends, "goal_yardsticks": goal}
    if sampled is not None:
        line["cpu_by_kind"] = sampled.by_kind()
        line["cpu_by_test_file"] = sampled.by_test_file(15)
        tf = sampled.tensorflow()
        each = tensorflow_start()
        line["tensorflow"] = {**tf, "start_cpu_s_each": round(each, 2),
                              "starts_cpu_s": round(tf["processes"] * each, 1)}
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", nargs="+", choices=list(TIERS), default=list(TIERS))
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--log-dir", type=Path, help="each tier's whole output, as TIER.txt")
    parser.add_argument("--cpu", action="store_true",
                        help="sum the CPU seconds of the tier's processes by kind and test file")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.log_dir:  # before the first tier, not after it ran: its log would be lost
        args.log_dir.mkdir(parents=True, exist_ok=True)
    base = yardstick()
    print(json.dumps({"yardstick_s": round(base, 2), "busy": args.busy,
                      "cpus": os.cpu_count()}), flush=True)
    failed = False
    with busy_core(args.busy):
        for name in args.tiers:
            log = args.log_dir / f"{name}.txt" if args.log_dir else None
            line = run_tier(name, args.pytest_args, log, args.cpu)
            line["yardsticks"] = round(line["wall_s"] / base, 1)
            line["met"] = line["rc"] == 0 and line["yardsticks"] <= line["goal_yardsticks"]
            failed |= line["rc"] != 0
            print(json.dumps(line), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
