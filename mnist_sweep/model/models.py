"""Model families built from the `model/` config group.

Both families take the same (N, 28, 28) float input in [0, 1], so data is prepared once per process
and shared by every trial whatever its family; the CNN adds the channel axis itself. The model a
run logs wraps it to take raw uint8 images (`serving_model`), as a user calling it has them.
Imports Keras: import this module only after the backend is chosen (`mnist_sweep.model.backend`).
The output layer is a softmax and the loss is computed on probabilities (`from_logits=False`): the
notebook pairs softmax with `from_logits=True`, which makes Keras treat probabilities as logits
(it warns, and the loss and gradients are distorted).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from mnist_sweep.data.mnist import NUM_CLASSES

INPUT_SHAPE = (28, 28)
# Keras' 0.99 leaves a third of the initial (0, 1) moving statistics after 120 steps: a quick run
# on a 5,000-digit slice then validated at chance (0.12) while it trained at 0.9; 0.9 has settled
# after 50 steps, and a full epoch (430 steps at batch 128) settles either.
BN_MOMENTUM = 0.9
AUGMENT_NAME = "augment"  # the training-only block; serving_model leaves it out
# Per layer output in one inference batch. Measured on 2 cores, 10,000 digits: the 32->64 CNN
# predicts in 2.0 s in batches of 256 rows (25 MB per layer), 2.8 s in batches of 2,600 (256 MB);
# the 16->32 CNN 1.3 vs 1.6 s. Larger batches only spill out of the caches.
LAYER_BYTES = 24 * 2**20


def build_model(
    model: Mapping[str, Any], seed: int | None = None,
    augment: Mapping[str, float] | None = None, noise: float = 0.0,
) -> Any:
    """Build an uncompiled `keras.Sequential` for the configured family.

    The initial weights are drawn here, so this is where a run's seed must first apply (the
    augmentation layers draw their seeds here too). `augment` (`train.augment`) puts random
    rotation/shift/zoom layers first, and `noise` (`train.noise_augment`) the notebook's noise
    after them: part of the compiled training step, so a batch is transformed where it is
    trained on, and identities whenever Keras calls the model with training=False (validation,
    evaluation, predict).
    """
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    stack: list[Any] = [keras.Input(shape=INPUT_SHAPE)]
    augmentation = augment_block(augment or {}, noise)
    if model["family"] == "cnn" or augmentation is not None:
        stack.append(layers.Reshape((*INPUT_SHAPE, 1)))
    if augmentation is not None:
        stack.append(augmentation)
    if model["family"] == "cnn":
        for block in model["conv"]:
            stack += _conv_block(block)
    stack.append(layers.Flatten())
    for layer in model.get("hidden") or []:
        stack.append(layers.Dense(layer["units"], activation=layer.get("activation", "relu")))
        if layer.get("dropout"):
            stack.append(layers.Dropout(layer["dropout"]))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name=f"mnist_{model['family']}")


def augment_block(augment: Mapping[str, float], noise: float = 0.0) -> Any | None:
    """The `train.augment` layers and the training noise as one block (None when all are 0), on
    (28, 28, 1) images.

    Filled with 0, the background: Keras' default reflection would mirror strokes into the frame.
    The noise comes last, on the whole frame, as a noisy test image has it.
    """
    stack: list[Any] = []
    if augment.get("rotation"):
        stack.append(layers.RandomRotation(float(augment["rotation"]) / 360.0,
                                           fill_mode="constant"))
    if augment.get("shift"):
        shift = float(augment["shift"])
        stack.append(layers.RandomTranslation(shift, shift, fill_mode="constant"))
    if augment.get("zoom"):
        stack.append(layers.RandomZoom(float(augment["zoom"]), fill_mode="constant"))
    if noise:
        stack.append(RandomUniformNoise(noise))
    return keras.Sequential(stack, name=AUGMENT_NAME) if stack else None


@keras.saving.register_keras_serializable(package="mnist_sweep")
class RandomUniformNoise(layers.Layer):
    """The notebook's noise as training augmentation: x + u*f*U[0,1), u ~ U[0,1) per image, drawn
    afresh for every batch; the identity outside training.

    One fixed noisy copy of the training set (x + f*U[0,1) drawn once) never shows the model a
    clean digit, nor the same digit twice with other noise: its clean accuracy is what suffers
    (0.9599 clean at f=0.83). A level per image spans clean to f, so one model learns both.
    """

    def __init__(self, factor: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = float(factor)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        shape = keras.ops.shape(inputs)
        level = keras.random.uniform((shape[0],) + (1,) * (len(inputs.shape) - 1),
                                     maxval=self.factor, seed=self.generator)
        return inputs + level * keras.random.uniform(shape, seed=self.generator)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


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
            layers.BatchNormalization(momentum=BN_MOMENTUM),
            layers.Activation(activation),
        ]
    else:
        out.append(conv(activation=activation))
    if block.get("pool"):
        out.append(layers.MaxPooling2D(block["pool"]))
    if block.get("dropout"):
        out.append(layers.Dropout(block["dropout"]))
    return out


def serving_model(model: Any) -> Any:
    """`model` behind a `Rescaling(1/255)` that takes raw MNIST images (uint8, 28x28), without
    its training-only augmentation block.

    Trained models expect floats in [0, 1]; given raw pixels they silently predict something else
    (the notebook's net: 0.9524 instead of 0.9574). The logged model scales its input itself.
    Augmentation is a way of training, not part of the classifier: the logged model shares the
    trained layers (same weights, same outputs) but has no random layers for a caller to switch
    on by calling it with training=True, nor for a loader to rebuild.
    """
    kept = [layer for layer in model.layers if layer.name != AUGMENT_NAME]
    return keras.Sequential(
        [keras.Input(shape=INPUT_SHAPE, dtype="uint8"), layers.Rescaling(1.0 / 255), *kept],
        name=f"{model.name}_uint8",
    )


def predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """`model.predict` minus its per-call setup, every batch padded to one shape.

    Each `predict` call builds a data pipeline and a progress loop (~50 ms on 2 cores, more than
    the inference of 10,000 digits by the dense net), and a trial makes six of them. A short last
    batch would be a second input shape, traced and compiled again for every new model (~50 ms);
    padding it with zeros keeps one shape, and inference is per row, so the rows kept are the same.
    """
    if not len(x):
        return np.zeros((0, NUM_CLASSES), np.float32)
    size = even_batch(len(x), batch_rows(model, batch_size))
    batches = []
    for i in range(0, len(x), size):
        batch = x[i : i + size]
        if len(batch) < size:
            batch = np.concatenate([batch, np.zeros((size - len(batch), *x.shape[1:]), x.dtype)])
        batches.append(np.asarray(model.predict_on_batch(batch))[: len(x) - i])
    return np.concatenate(batches)


def even_batch(rows: int, most: int) -> int:
    """Batch size for `rows` in as few batches of at most `most` as possible, nearly equal.

    The last batch is then padded by less than one row per batch: 10,000 digits at most 8,000
    a batch are 2 x 5,000, not 8,000 + 2,000 padded to 8,000. The test and validation sets (10,000
    and 5,000) mostly get the same shape, so one trace serves both.
    """
    return math.ceil(rows / math.ceil(rows / most))


def batch_rows(model: Any, most: int) -> int:
    """Rows per inference batch: `most`, fewer where a layer's output would pass LAYER_BYTES.

    Each call has a fixed cost (~2 ms), so the dense net wants few large batches (10,000 digits
    in 0.021-0.025 s in batches of 1,024-10,000 rows, 0.073 s in batches of 128); a CNN wants
    batches whose feature maps stay in cache: 32 maps of 28x28 get ~250 rows, the dense net
    ~8,000 (its 10,000 test digits: two batches of 5,000).
    """
    widest = max((math.prod(layer.output.shape[1:]) for layer in model.layers), default=1)
    return max(1, min(most, LAYER_BYTES // (4 * widest)))
