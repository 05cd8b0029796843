"""Model families built from the `model/` config group.

Both families take the same (N, 28, 28) float input, so data is prepared once per process and
shared by every trial whatever its family; the CNN adds the channel axis itself.
Imports Keras: import this module only after the backend is chosen (`mnist_sweep.backend`).
The output layer is a softmax and the loss is computed on probabilities (`from_logits=False`): the
notebook pairs softmax with `from_logits=True`, which makes Keras treat probabilities as logits
(it warns, and the loss and gradients are distorted).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import layers

from mnist_sweep.errors import ConfigError, is_positive_int

FAMILIES = ("dense", "cnn")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "softplus", "linear")
NUM_CLASSES = 10
INPUT_SHAPE = (28, 28)
PADDINGS = ("valid", "same")


def validate_model_config(model: Mapping[str, Any]) -> None:
    """Reject an unknown family, activation or a non-positive size before anything is built."""
    family = model.get("family")
    if family not in FAMILIES:
        raise ConfigError("model.family", family, FAMILIES)
    for i, layer in enumerate(model.get("hidden") or []):
        _check_layer(f"model.hidden.{i}", layer, size_key="units")
    if family == "cnn":
        blocks = model.get("conv") or []
        if not blocks:
            raise ConfigError("model.conv", blocks, "a non-empty list of conv blocks")
        side = INPUT_SHAPE[0]
        for i, block in enumerate(blocks):
            _check_layer(f"model.conv.{i}", block, size_key="filters")
            kernel = block.get("kernel", 3)
            if not is_positive_int(kernel):
                raise ConfigError(f"model.conv.{i}.kernel", kernel, "a positive int")
            pool = block.get("pool")
            if pool is not None and not is_positive_int(pool):
                raise ConfigError(f"model.conv.{i}.pool", pool, "null or a positive int")
            padding = block.get("padding", "valid")
            if padding not in PADDINGS:
                raise ConfigError(f"model.conv.{i}.padding", padding, PADDINGS)
            side = _check_side(i, side, kernel, padding, pool)


def _check_side(i: int, side: int, kernel: int, padding: str, pool: int | None) -> int:
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


def build_model(model: Mapping[str, Any], seed: int | None = None) -> Any:
    """Build an uncompiled `keras.Sequential` for the configured family.

    The initial weights are drawn here, so this is where a run's seed must first apply.
    """
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    stack: list[Any] = [keras.Input(shape=INPUT_SHAPE)]
    if model["family"] == "cnn":
        stack.append(layers.Reshape((*INPUT_SHAPE, 1)))
        for block in model["conv"]:
            stack += _conv_block(block)
    stack.append(layers.Flatten())
    for layer in model.get("hidden") or []:
        stack.append(layers.Dense(layer["units"], activation=layer.get("activation", "relu")))
        if layer.get("dropout"):
            stack.append(layers.Dropout(layer["dropout"]))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name=f"mnist_{model['family']}")


def _conv_block(block: Mapping[str, Any]) -> Sequence[Any]:
    """Conv -> [BatchNorm] -> activation -> [MaxPool] -> [Dropout]."""
    activation = block.get("activation", "relu")
    conv = functools.partial(layers.Conv2D, block["filters"], block.get("kernel", 3),
                             padding=block.get("padding", "valid"))
    out: list[Any] = []
    if block.get("batch_norm"):
        # BN between the linear conv and its nonlinearity; the conv's bias is redundant then.
        out += [
            conv(use_bias=False),
            layers.BatchNormalization(),
            layers.Activation(activation),
        ]
    else:
        out.append(conv(activation=activation))
    if block.get("pool"):
        out.append(layers.MaxPooling2D(block["pool"]))
    if block.get("dropout"):
        out.append(layers.Dropout(block["dropout"]))
    return out
