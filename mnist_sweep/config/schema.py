"""The config groups as typed dataclasses, and the rules types cannot say.

Registered in Hydra's ConfigStore as `<group>/schema`; each YAML file of a group starts from it
(`defaults: [schema, _self_]`), so an unknown key (`+train.epoch=3`) or a wrong type
(`train.epochs=abc`) fails while Hydra composes the config, before any code of ours runs. What a
type cannot say (allowed names, ranges, rules across fields) is checked once by `check`, before
the backend starts or anything is loaded or recorded. Imports nothing heavy: the CLI checks a
config before Keras is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from mnist_sweep.config.train_options import (
    AugmentConfig,
    CheckpointConfig,
    LRScheduleConfig,
    check_augment,
    check_checkpoint,
    check_lr_schedule,
)
from mnist_sweep.errors import ConfigError, is_int, is_positive_int, unknown_key

FAMILIES = ("dense", "cnn")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "softplus", "linear")
PADDINGS = ("valid", "same")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
BACKENDS = ("tensorflow", "jax")
SOURCES = ("auto", "cache", "idx", "keras", "pypi")
IMAGE_SIDE = 28
N_TRAIN = 60_000

# OmegaConf 2.3 types fields from annotations at runtime: `Optional[int]` rather than `int | None`.
# ruff: noqa: UP007, UP045


@dataclass
class LayerConfig:
    """One dense layer of `model.hidden`."""

    units: int = 16
    """Neurons in the layer."""
    activation: str = "relu"
    """Activation function: relu, sigmoid, tanh, elu, selu, gelu, swish, softplus, linear."""
    dropout: float = 0.0
    """Dropout rate after the layer, in [0, 1); 0 = none."""


@dataclass
class ConvBlockConfig:
    """Conv -> [BatchNorm] -> activation -> [MaxPool] -> [Dropout], one entry of `model.conv`."""

    filters: int = 4
    """Convolution filters (output channels) of the block."""
    kernel: int = 3
    """Side of the square convolution kernel, in pixels."""
    padding: str = "valid"
    """`valid` (the image shrinks by kernel - 1, as in the notebook) or `same` (it keeps its
    size)."""
    activation: str = "relu"
    """Activation after the convolution (and batch norm): the names `model.hidden` takes."""
    pool: Optional[int] = None
    """Side of the max-pooling window after the activation; null = no pooling."""
    batch_norm: bool = False
    """Batch normalization between the convolution and the activation."""
    dropout: float = 0.0
    """Dropout rate at the end of the block, in [0, 1); 0 = none."""


@dataclass
class ModelConfig:
    family: str = "dense"
    """Model family: `dense` (a multilayer perceptron) or `cnn` (conv blocks, then a dense head)."""
    conv: list[ConvBlockConfig] = field(default_factory=list)
    """The conv blocks, first to last (`cnn` only; a stack that would shrink the 28x28 image to
    nothing is rejected)."""
    hidden: list[LayerConfig] = field(default_factory=list)
    """The hidden dense layers, first to last (a `cnn`'s dense head); the output layer (10 softmax)
    is always added."""


@dataclass
class DataConfig:
    source: str = "auto"
    """Where MNIST comes from: `auto` (the first that works of cache, idx, keras, pypi), or one of
    `cache`, `idx`, `keras`, `pypi`."""
    dir: Optional[str] = None
    """A folder with the four IDX files (`train-images-idx3-ubyte[.gz]`, ...); needed by
    `source=idx`, tried by `auto`."""
    cache_dir: Optional[str] = None
    """Where `mnist.npz` is cached; null = `$MNIST_SWEEP_CACHE` or `~/.cache/mnist-sweep`."""
    val_size: int = 5000
    """The first N training images held out for validation (5000, as in the notebook)."""
    limit_train: Optional[int] = None
    """Train on the first N of the remaining training images (quick runs); null = all of them."""


@dataclass
class TrainConfig:
    epochs: int = 5
    """Epochs to train each model (the most, with early stopping)."""
    batch_size: int = 32
    """Training images per gradient step."""
    optimizer: str = "adam"
    """Keras optimizer: adam, sgd or rmsprop."""
    learning_rate: float = 0.001
    """The optimizer's (starting) learning rate, in (0, 10)."""
    seed: Optional[int] = 0
    """Seeds the initial weights, shuffling, dropout and augmentation, so a run repeats on the same
    machine and backend; null = unseeded."""
    shuffle: bool = True
    """Shuffle the training images every epoch."""
    early_stopping_patience: Optional[int] = None
    """Stop after this many epochs without `val_accuracy` gain and restore the best epoch's weights;
    null = off."""
    noise_augment: float = 0.0
    """Train on the notebook's noise: each image of each batch becomes x + u*f*U[0,1) with its own u
    in [0, 1), f this value; 0 = off."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Random rotation, shift and zoom of the training digits (below)."""
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    """How the learning rate changes while training (below)."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Per-epoch checkpoints a retried or resumed run continues from (below)."""
    backend: str = "tensorflow"
    """Keras backend: `tensorflow` or `jax` (`pip install -e '.[jax]'`)."""
    steps_per_execution: Any = "auto"
    """Batches per compiled call: `auto` (up to 128, fewer for large models) or a positive int;
    speed only."""
    intra_op_threads: Optional[int] = None
    """Threads TensorFlow uses inside one operation; null = the framework's default (in a sweep: the
    worker's share of the cores)."""
    inter_op_threads: Optional[int] = None
    """Operations TensorFlow runs at once; null = the framework's default (in a sweep: the worker's
    share of the cores)."""


@dataclass
class EvalConfig:
    noise_levels: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    """The noise levels f of the noisy test sets (x + f*U[0,1), as in the notebook); one metric
    `test_accuracy_noise_<f>` each."""
    noise_seed: Optional[int] = 0
    """Seeds the noise of the noisy test and validation sets, so every run sees the same ones; null
    = unseeded."""
    batch_size: int = 10000
    """The most images per inference batch when evaluating (fewer for wide CNNs); speed only."""
    misclassified: int = 12
    """Misclassified test digits drawn in the run's `misclassified` image."""


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    """MLflow tracking URI (a SQLite file, a server's http(s) URL); `$MLFLOW_TRACKING_URI` wins over
    it."""
    experiment: str = "mnist-sweep"
    """MLflow experiment the runs are recorded in."""
    log_model: bool = True
    """Log the trained model as an MLflow Keras model."""
    log_plots: bool = True
    """Log the figures: learning curves, noise accuracy, confusion matrix, misclassified digits."""


@dataclass
class RunConfig:
    """The keys of conf/config.yaml outside the config groups. Not a registered schema (the
    groups are): it gives those keys a type and a meaning for the configuration reference
    (`mnist_sweep/config/reference.py`); `registry.validate` checks them."""

    objectives: list[str] = field(default_factory=lambda: ["val_accuracy"])
    """What a run returns to a sweeper, in order: one name, or several for a multi-objective sweep.
    Any whole-run metric: `val_accuracy`, `test_accuracy`, `val_accuracy_noise_0.5`,
    `train_time_s`, ... Select on `val_*`: a sweep that maximizes a `test_*` metric overstates
    it."""
    progress: bool = True
    """Epoch bars, run summaries and the sweeper's progress lines; false: errors and the answer
    only."""


SCHEMAS: dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig,
    "tracking": TrackingConfig,
}


# list-valued fields whose entries have a schema of their own
ENTRIES: dict[tuple[type, str], type] = {
    (ModelConfig, "hidden"): LayerConfig, (ModelConfig, "conv"): ConvBlockConfig,
}
# fields that are a typed node of their own
NESTED: dict[tuple[type, str], type] = {
    (TrainConfig, "augment"): AugmentConfig, (TrainConfig, "lr_schedule"): LRScheduleConfig,
    (TrainConfig, "checkpoint"): CheckpointConfig,
}


def register() -> None:
    cs = ConfigStore.instance()
    for group, node in SCHEMAS.items():
        cs.store(group=group, name="schema", node=node, provider="mnist-sweep")


# ---- rules beyond types: each raises ConfigError naming the dotted key ----
def check_keys(prefix: str, node: Mapping[str, Any], schema: type) -> None:
    """Hydra lets `+train.epoch=3` add a key even to a typed config: name it and the known ones
    (nothing would ever read it, and the run would quietly ignore what the user asked for)."""
    known = [f.name for f in fields(schema)]
    for key in node:
        if key not in known:
            raise unknown_key(f"{prefix}.{key}", known)
    for (owner, name), entry in ENTRIES.items():
        if owner is schema:
            for i, item in enumerate(node.get(name) or []):
                check_keys(f"{prefix}.{name}.{i}", item, entry)
    for (owner, name), nested in NESTED.items():
        if owner is schema and node.get(name) is not None:
            check_keys(f"{prefix}.{name}", node[name], nested)


def check_model(model: Mapping[str, Any]) -> None:
    family = model.get("family")
    if family not in FAMILIES:
        raise ConfigError("model.family", family, FAMILIES)
    for i, layer in enumerate(model.get("hidden") or []):
        _check_layer(f"model.hidden.{i}", layer, size_key="units")
    if family != "cnn":
        return
    blocks = model.get("conv") or []
    if not blocks:
        raise ConfigError("model.conv", blocks, "a non-empty list of conv blocks")
    side = IMAGE_SIDE
    for i, block in enumerate(blocks):
        _check_layer(f"model.conv.{i}", block, size_key="filters")
        kernel, pool = block.get("kernel", 3), block.get("pool")
        if not is_positive_int(kernel):
            raise ConfigError(f"model.conv.{i}.kernel", kernel, "a positive int")
        if pool is not None and not is_positive_int(pool):
            raise ConfigError(f"model.conv.{i}.pool", pool, "null or a positive int")
        padding = block.get("padding", "valid")
        if padding not in PADDINGS:
            raise ConfigError(f"model.conv.{i}.padding", padding, PADDINGS)
        side = _side_after(i, side, kernel, padding, pool)


def _side_after(i: int, side: int, kernel: int, padding: str, pool: int | None) -> int:
    """The feature map's side after block i: a stack that shrinks it to nothing is bad input,
    caught here rather than as a Keras error in the middle of a sweep."""
    after = side if padding == "same" else side - kernel + 1
    if pool:
        after //= pool
    if after < 1:
        raise ConfigError(
            f"model.conv.{i}", f"kernel {kernel}, padding {padding}, pool {pool}",
            f"a block that keeps the {side}x{side} feature map it receives at least 1x1 "
            "(a smaller kernel or pool, padding: same, or fewer blocks)",
        )
    return after


def _check_layer(key: str, layer: Mapping[str, Any], size_key: str) -> None:
    size = layer.get(size_key)
    if not is_positive_int(size):
        raise ConfigError(f"{key}.{size_key}", size, "a positive int")
    activation = layer.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"{key}.activation", activation, ACTIVATIONS)
    dropout = layer.get("dropout", 0.0) or 0.0
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"{key}.dropout", dropout, "a float in [0, 1)")


def check_data(data: Mapping[str, Any]) -> None:
    source = data.get("source", "auto")
    if source not in SOURCES:
        raise ConfigError("data.source", source, SOURCES)
    if source == "idx" and not data.get("dir"):
        raise ConfigError("data.dir", data.get("dir"), "an IDX directory with data.source=idx")
    val_size = data.get("val_size", 5000)
    if not is_int(val_size) or not 0 <= val_size < N_TRAIN:
        raise ConfigError("data.val_size", val_size, f"an integer in [0, {N_TRAIN})")
    limit = data.get("limit_train")
    most = N_TRAIN - val_size
    if limit is not None and (not is_int(limit) or not 1 <= limit <= most):
        raise ConfigError("data.limit_train", limit, f"null or an integer in [1, {most}]")


def check_train(train: Mapping[str, Any]) -> None:
    for key in ("epochs", "batch_size"):
        if not is_positive_int(train.get(key)):
            raise ConfigError(f"train.{key}", train.get(key), "a positive int")
    if train.get("optimizer") not in OPTIMIZERS:
        raise ConfigError("train.optimizer", train.get("optimizer"), OPTIMIZERS)
    lr = train.get("learning_rate")
    if not isinstance(lr, (int, float)) or not 0 < lr < 10:
        raise ConfigError("train.learning_rate", lr, "a float in (0, 10)")
    backend = train.get("backend", "tensorflow")
    if backend not in BACKENDS:
        raise ConfigError("train.backend", backend, BACKENDS)
    for key in ("intra_op_threads", "inter_op_threads"):
        value = train.get(key)
        if value is not None and not is_positive_int(value):
            raise ConfigError(f"train.{key}", value, "null (framework default) or a positive int")
        if value is not None and backend == "jax":
            # XLA's CPU client has no thread-count flag: a set value would be a silent no-op.
            raise ConfigError(
                f"train.{key}", value, "null with train.backend=jax (XLA's CPU client has no "
                "thread-count setting; it uses one thread per core)",
            )
    spe = train.get("steps_per_execution", "auto")
    if spe != "auto" and not is_positive_int(spe):
        raise ConfigError("train.steps_per_execution", spe, "'auto' or a positive int")
    if float(train.get("noise_augment") or 0.0) < 0:
        raise ConfigError("train.noise_augment", train.get("noise_augment"), "a float >= 0")
    patience = train.get("early_stopping_patience")
    if patience is not None and not is_positive_int(patience):
        raise ConfigError("train.early_stopping_patience", patience, "null or a positive int")
    check_augment(train.get("augment") or {})
    check_lr_schedule(train.get("lr_schedule") or {}, patience)
    check_checkpoint(train.get("checkpoint") or {})


def check_eval(ev: Mapping[str, Any]) -> None:
    levels = ev.get("noise_levels")
    if levels is None or isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise ConfigError("eval.noise_levels", levels, "a list of floats >= 0")
    for f in levels:
        if not isinstance(f, (int, float)) or isinstance(f, bool) or f < 0:
            raise ConfigError("eval.noise_levels", list(levels), "a list of floats >= 0")
    for key in ("batch_size", "misclassified"):
        if not is_int(ev.get(key)) or ev.get(key) < (1 if key == "batch_size" else 0):
            allowed = "a positive int" if key == "batch_size" else "an int >= 0"
            raise ConfigError(f"eval.{key}", ev.get(key), allowed)


CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "model": check_model, "data": check_data, "train": check_train, "eval": check_eval,
}
