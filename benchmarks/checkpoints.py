"""What a per-epoch checkpoint costs: `python -m benchmarks.checkpoints [--limit N]`.

For the dense and CNN seed models and the CNN `cnn_search` starts from, one JSON line each: the
seconds of one epoch of training (with validation), of one checkpoint as `train.checkpoint` saves
it (state.npz: model and optimizer variables, RNG and callback state, fsynced), of a Keras
`model.save(".keras")` for comparison, the file sizes, and the checkpoint as a share of the epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = 5
# the known-good CNN cnn_search enqueues first: 3 blocks of 32 filters with batch norm, a 256 head
SEARCH_CNN = {"family": "cnn", "hidden": [{"units": 256, "activation": "relu", "dropout": 0.1}],
              "conv": [{"filters": 32, "kernel": 3, "padding": "same", "pool": 2,
                        "batch_norm": True, "dropout": 0.05}] * 3}


def measure(name: str, model_cfg: Any, overrides: list[str], folder: Path) -> dict[str, Any]:
    from mnist_sweep.config import registry
    from mnist_sweep.data import mnist
    from mnist_sweep.model import checkpoints, models, training

    cfg = registry.compose(["progress=false", *overrides])
    splits = mnist.prepare(cfg.data)
    model = models.build_model(model_cfg or cfg.model, seed=0)
    store = checkpoints.Store(folder / name)
    result = training.fit(model, splits, cfg.train, checkpoints=store)
    epoch = min(result.history["epoch_time_s"])  # the first pays tracing
    # what the fit's Checkpointer saved after each epoch, captured and saved again, timed
    hook = training._EpochHook(None)
    cb = checkpoints.Checkpointer(store, hook, [])
    cb.set_model(model)
    save, keras_save = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        store.save(*cb._capture())
        save.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.save(folder / f"{name}.keras")
        keras_save.append(time.perf_counter() - start)
    seconds = statistics.median(save)
    return {
        "model": name, "params": model.count_params(), "train_images": len(splits.x_train),
        "epoch_s": round(epoch, 3), "checkpoint_s": round(seconds, 4),
        "checkpoint_pct_of_epoch": round(100 * seconds / epoch, 2),
        "keras_save_s": round(statistics.median(keras_save), 4),
        "checkpoint_mb": round(Path(store.file).stat().st_size / 2**20, 2),
        "keras_mb": round((folder / f"{name}.keras").stat().st_size / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="data.limit_train (default all)")
    parser.add_argument("--models", default="dense,cnn,cnn_search", help="which, comma-separated")
    args = parser.parse_args()
    limit = [f"data.limit_train={args.limit}"] if args.limit else []
    common = ["train.epochs=3", "train.batch_size=128", *limit]
    with tempfile.TemporaryDirectory() as tmp:
        for name, model_cfg, overrides in (
            ("dense", None, ["model=dense", "train.batch_size=32", *limit, "train.epochs=3"]),
            ("cnn", None, ["model=cnn", *common]),
            ("cnn_search", SEARCH_CNN, ["model=cnn", *common]),
        ):
            if name in args.models.split(","):
                print(json.dumps(measure(name, model_cfg, overrides, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
