"""The two seed models match the notebook exactly; the families build what their configs say."""

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_sweep.errors import ConfigError
from mnist_sweep.models import build_model, validate_model_config


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


@pytest.mark.parametrize(
    ("model", "key", "allowed"),
    [
        ({"family": "mlp", "hidden": []}, "model.family", "dense, cnn"),
        ({"family": "dense", "hidden": [{"units": 16, "activation": "sigmoidd"}]},
         "model.hidden.0.activation", "relu"),
        ({"family": "dense", "hidden": [{"units": 0, "activation": "relu"}]},
         "model.hidden.0.units", "positive int"),
        ({"family": "cnn", "conv": [], "hidden": []}, "model.conv", "non-empty"),
        ({"family": "cnn", "conv": [{"filters": 4, "kernel": 0}], "hidden": []},
         "model.conv.0.kernel", "positive int"),
        ({"family": "cnn", "conv": [{"filters": 4, "padding": "full"}], "hidden": []},
         "model.conv.0.padding", "valid, same"),
        # 28 -> 24 -> 12 -> 8 -> 4 -> a 5x5 kernel on a 4x4 map: nothing left
        ({"family": "cnn", "hidden": [], "conv": [{"filters": 4, "kernel": 5, "pool": 2}] * 3},
         "model.conv.2", "keeps the 4x4 feature map"),
    ],
)
def test_bad_model_configs_name_the_key_and_allowed_values(model, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate_model_config(OmegaConf.create(model))
    assert f"'{key}'" in str(err.value) and allowed in str(err.value)


def test_a_seed_fixes_the_initial_weights(compose):
    cfg = compose().model
    first, again, other = (build_model(cfg, seed=s).get_weights() for s in (1, 1, 2))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_same_padding_keeps_the_map_so_deeper_stacks_build(compose):
    block = {"filters": 4, "kernel": 5, "padding": "same", "pool": 2, "activation": "relu"}
    cfg = OmegaConf.create({"family": "cnn", "conv": [block] * 3, "hidden": []})
    validate_model_config(cfg)
    model = build_model(cfg, seed=0)
    assert model.output_shape == (None, 10)
    flat = next(layer for layer in model.layers if layer.name.startswith("flatten"))
    assert flat.output.shape[-1] == 3 * 3 * 4  # 28 -> 14 -> 7 -> 3
