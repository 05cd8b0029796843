"""Each worker's GPUs: the assignment as tables, then real worker processes that see theirs.

There is no GPU here: the devices are named (`hydra.sweeper.gpus`), as a user names them, and a
trial of the toy app records the `CUDA_VISIBLE_DEVICES` its worker process was started with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState
from toyapp import NO_MLFLOW, study, sweep

from hydra_plugins.optuna_mlflow_sweeper._impl import gpus


@pytest.mark.parametrize(("devices", "n", "expected"), [
    ([], 2, [[], []]),
    (["0"], 1, [["0"]]),
    (["0"], 3, [["0"], ["0"], ["0"]]),  # one GPU: every worker shares it
    (["0", "1"], 2, [["0"], ["1"]]),  # its own each
    (["0", "1"], 3, [["0"], ["1"], ["0"]]),
    (["0", "1", "2", "3"], 2, [["0", "2"], ["1", "3"]]),  # more GPUs than workers: all used
    (["0", "1", "2"], 2, [["0", "2"], ["1"]]),
    (["2", "5"], 4, [["2"], ["5"], ["2"], ["5"]]),  # the devices named, not 0..n
])
def test_devices_go_round_robin_to_the_workers(devices: list[str], n: int,
                                               expected: list[list[str]]) -> None:
    assert gpus.assign(devices, n) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("", []), ("-1", []), ("0", ["0"]), ("0,1", ["0", "1"]), (" 1 , 3 ", ["1", "3"]),
    ("1,-1,2", ["1"]),  # CUDA stops at the first -1
    ("GPU-8f6c,GPU-11aa", ["GPU-8f6c", "GPU-11aa"]),
])
def test_the_gpus_cuda_visible_devices_shows(value: str, expected: list[str]) -> None:
    assert gpus.visible({gpus.GPU_ENV: value}) == expected


@pytest.mark.parametrize(("cluster", "n", "share"), [
    (0, 2, 0.0), (1, 1, 1.0), (1, 2, 0.5), (1, 3, 0.3333), (2, 2, 1.0), (3, 2, 1.0),
    (8, 3, 2.0), (4, 8, 0.5),
])
def test_each_ray_worker_asks_for_its_share_of_the_clusters_gpus(cluster: float, n: int,
                                                                 share: float) -> None:
    assert gpus.ray_share(cluster, n) == share
    assert gpus.ray_share(cluster, n) * n <= cluster


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib"]], ids=["local", "joblib"])
def test_each_worker_process_sees_its_own_gpus(tmp_path: Path, env: dict[str, str],
                                               launcher: list[str]) -> None:
    env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
    sweep(tmp_path, env, "x=interval(-5,5)", "sleep=0.3", "hydra.sweeper.n_trials=3",
          "hydra.sweeper.n_jobs=2", "hydra.sweeper.gpus=[7,9]", *launcher, NO_MLFLOW)
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    seen: dict[int, set[str | None]] = {}
    for t in trials:
        seen.setdefault(t.user_attrs["pid"], set()).add(t.user_attrs.get("gpus"))
    # each worker process one device, for all of its trials; two workers, two devices
    assert all(len(devices) == 1 for devices in seen.values()), seen
    devices = [d for ds in seen.values() for d in ds]
    assert set(devices) <= {"7", "9"} and len(set(devices)) == len(devices), seen


def test_a_gpu_list_with_an_empty_or_joined_id_is_refused_in_one_line(
        tmp_path: Path, env: dict[str, str]) -> None:
    proc = sweep(tmp_path, env, "x=interval(-5,5)", "hydra.sweeper.n_jobs=2",
                 "hydra.sweeper.gpus=['0,1']", ok=False)
    assert proc.returncode == 2
    assert "hydra.sweeper.gpus" in proc.stderr and "Traceback" not in proc.stderr
