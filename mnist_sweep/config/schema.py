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
    activation: str = "relu"
    dropout: float = 0.0


@dataclass
class ConvBlockConfig:
    """Conv -> [BatchNorm] -> activation -> [MaxPool] -> [Dropout], one entry of `model.conv`."""

    filters: int = 4
    kernel: int = 3
    padding: str = "valid"
    activation: str = "relu"
    pool: Optional[int] = None
    batch_norm: bool = False
    dropout: float = 0.0


@dataclass
class ModelConfig:
    family: str = "dense"
    conv: list[ConvBlockConfig] = field(default_factory=list)  # cnn only
    hidden: list[LayerConfig] = field(default_factory=list)


@dataclass
class DataConfig:
    source: str = "auto"
    dir: Optional[str] = None
    cache_dir: Optional[str] = None
    val_size: int = 5000
    limit_train: Optional[int] = None


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    seed: Optional[int] = 0
    shuffle: bool = True
    early_stopping_patience: Optional[int] = None
    noise_augment: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    backend: str = "tensorflow"
    steps_per_execution: Any = "auto"  # "auto" or an int (OmegaConf has no unions)
    intra_op_threads: Optional[int] = None
    inter_op_threads: Optional[int] = None


@dataclass
class EvalConfig:
    noise_levels: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    noise_seed: Optional[int] = 0
    batch_size: int = 10000
    misclassified: int = 12


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "mnist-sweep"
    log_model: bool = True
    log_plots: bool = True


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
