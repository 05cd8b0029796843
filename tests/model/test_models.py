"""The two seed models match the notebook exactly; the families build what their configs say."""

import keras
import numpy as np
from omegaconf import OmegaConf

from mnist_sweep.config.schema import check_model
from mnist_sweep.data import mnist
from mnist_sweep.model import models
from mnist_sweep.model.models import build_model


def test_notebook_dense_model_has_12730_parameters(compose):
    model = build_model(compose().model)
    assert model.count_params() == 12_730
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [(16, "sigmoid"), (10, "softmax")]


def test_notebook_cnn_has_43490_parameters(compose):
    model = build_model(compose(["model=cnn"]).model)
    assert model.count_params() == 43_490
    conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    layers = [(c.filters, c.kernel_size, c.activation.__name__) for c in conv]
    assert layers == [(4, (3, 3), "relu")]


def test_general_families_follow_their_config():
    dense = OmegaConf.create(
        {"family": "dense", "hidden": [
            {"units": 64, "activation": "relu", "dropout": 0.2},
            {"units": 32, "activation": "tanh", "dropout": 0.0},
        ]}
    )
    model = build_model(dense)
    assert model.count_params() == (784 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    cnn = OmegaConf.create(
        {"family": "cnn",
         "conv": [{"filters": 8, "kernel": 5, "activation": "relu", "pool": 2, "batch_norm": True,
                   "dropout": 0.1}],
         "hidden": [{"units": 16, "activation": "relu"}]}
    )
    model = build_model(cnn)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"} <= kinds
    assert model.output_shape == (None, 10)


def test_a_seed_fixes_the_initial_weights(compose):
    cfg = compose().model
    first, again, other = (build_model(cfg, seed=s).get_weights() for s in (1, 1, 2))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_same_padding_keeps_the_map_so_deeper_stacks_build(compose):
    block = {"filters": 4, "kernel": 5, "padding": "same", "pool": 2, "activation": "relu"}
    cfg = OmegaConf.create({"family": "cnn", "conv": [block] * 3, "hidden": []})
    check_model(cfg)
    model = build_model(cfg, seed=0)
    assert model.output_shape == (None, 10)
    flat = next(layer for layer in model.layers if layer.name.startswith("flatten"))
    assert flat.output.shape[-1] == 3 * 3 * 4  # 28 -> 14 -> 7 -> 3


AUGMENT = {"rotation": 12.0, "shift": 0.12, "zoom": 0.12}


def _augmented(compose, family):
    # no dropout, no batch norm: the augmentation is the model's only training-time randomness
    return build_model(compose([f"model={family}"]).model, seed=0, augment=AUGMENT)


def test_augmentation_layers_run_in_training_only(compose):
    splits = mnist.prepare(compose(["data.limit_train=64"]).data)
    x = splits.x_test[:32]
    for family in ("dense", "cnn"):
        model = _augmented(compose, family)
        block = model.get_layer(models.AUGMENT_NAME)
        kinds = [type(layer).__name__ for layer in block.layers]
        assert kinds == ["RandomRotation", "RandomTranslation", "RandomZoom"], family
        assert model.count_params() == build_model(compose([f"model={family}"]).model
                                                   ).count_params()  # no weights of their own
        inference = np.asarray(model(x, training=False))
        np.testing.assert_array_equal(inference, np.asarray(model(x, training=False)))
        # the transforms really act in training: other images in, other outputs out
        trained = np.asarray(model(x, training=True))
        assert np.abs(trained - inference).max() > 1e-3, family
        moved = np.asarray(block(x[..., None], training=True))
        assert np.abs(moved - x[..., None]).mean() > 0.01


def test_no_augmentation_builds_the_model_as_before(compose):
    off = {"rotation": 0.0, "shift": 0.0, "zoom": 0.0}
    model = build_model(compose().model, seed=0, augment=off)
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Flatten", "Dense", "Dense"]


def test_the_serving_model_has_no_augmentation_and_predicts_the_same(compose):
    splits = mnist.prepare(compose(["data.limit_train=64"]).data)
    model = _augmented(compose, "cnn")
    served = models.serving_model(model)
    assert not [layer for layer in served.layers if layer.name == models.AUGMENT_NAME]
    assert all(not type(layer).__name__.startswith("Random") for layer in served.layers)
    raw = splits.x_test_raw[:32]
    # the same trained layers: identical outputs, even when called as in training
    expected = models.predict(model, splits.x_test[:32], 32)
    np.testing.assert_allclose(np.asarray(served(raw, training=True)), expected, atol=1e-6)


def test_training_noise_draws_a_level_per_image_afresh_each_batch(compose):
    layer = models.RandomUniformNoise(0.5, seed=1)
    blank = np.zeros((256, 28, 28, 1), np.float32)
    noisy = np.asarray(layer(blank, training=True))
    assert noisy.min() >= 0.0 and noisy.max() < 0.5
    # one level per image, spread from near-clean to f: the model sees both kinds of digits
    levels = noisy.reshape(256, -1).max(axis=1)
    assert levels.min() < 0.1 and levels.max() > 0.4
    assert not np.array_equal(noisy, np.asarray(layer(blank, training=True)))  # fresh draws
    np.testing.assert_array_equal(np.asarray(layer(blank, training=False)), blank)

    model = build_model(compose(["model=cnn"]).model, seed=0, noise=0.5)
    block = model.get_layer(models.AUGMENT_NAME)
    assert [type(layer).__name__ for layer in block.layers] == ["RandomUniformNoise"]
    served = models.serving_model(model)
    assert not [layer for layer in served.layers if layer.name == models.AUGMENT_NAME]
