"""Config checks: types and keys at composition (the schemas), the rest by `registry.validate`.

Every bad value names its dotted key and what is allowed, before anything loads or records.
"""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mnist_sweep.config import registry, schema
from mnist_sweep.errors import ConfigError
from tests.helpers import compose_config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epoch=3", "train.epoch"),           # misspelled
        ("model.hidden=[{units:16,activaton:relu}]", "activaton"),  # unknown key in a layer
        ("model=cnn", None),                         # fine: the control
        ("train.epochs=abc", "train.epochs"),       # wrong type
        ("train.learning_rate=fast", "train.learning_rate"),
        ("data.limit_train=1.5", "data.limit_train"),
        ("eval.noise_levels=0.5", "eval.noise_levels"),
        ("tracking.log_model=maybe", "tracking.log_model"),
        ("train.augment.rotation=lots", "train.augment.rotation"),  # a nested node is typed too
    ],
)
def test_unknown_keys_and_wrong_types_fail_while_composing(override, key):
    if key is None:
        compose_config([override])
        return
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config([override])
    text = str(raised.value) + str(raised.value.__cause__)
    assert key in text


def test_layer_entries_are_typed_and_get_defaults():
    cfg = compose_config(["model.hidden=[{units:64}]"])
    assert OmegaConf.to_container(cfg.model.hidden) == [
        {"units": 64, "activation": "relu", "dropout": 0.0}]
    cnn = compose_config(["model=cnn", "model.conv=[{filters:8}]"])
    assert cnn.model.conv[0].kernel == 3 and cnn.model.conv[0].pool is None


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        # Hydra lets `+` add a key even to a typed config; validate names it, the nearest known
        # one and all of them
        (["+train.epoch=3"], "train.epoch", "(did you mean 'train.epochs'?)"),
        (["+train.epoch=3"], "train.epoch", "has: epochs, batch_size"),
        (["+model.widths=[64]"], "model.widths", "has: family, conv, hidden"),
        (["+model.hidden.0.unit=8"], "model.hidden.0.unit", "has: units, activation, dropout"),
        (["model=cnn", "+model.conv.0.stride=2"], "model.conv.0.stride", "has: filters"),
        (["model.family=mlp"], "model.family", "dense, cnn"),
        (["model.hidden=[{units:16,activation:sigmoidd}]"], "model.hidden.0.activation", "relu"),
        (["model.hidden=[{units:0}]"], "model.hidden.0.units", "positive int"),
        (["model.hidden=[{units:8,dropout:1.0}]"], "model.hidden.0.dropout", "[0, 1)"),
        (["model=cnn", "model.conv=[]"], "model.conv", "non-empty"),
        (["model=cnn", "model.conv=[{filters:4,kernel:0}]"], "model.conv.0.kernel", "positive"),
        (["model=cnn", "model.conv=[{filters:4,padding:full}]"], "model.conv.0.padding",
         "valid, same"),
        # 28 -> 24 -> 12 -> 8 -> 4 -> a 5x5 kernel on a 4x4 map: nothing left
        (["model=cnn", "model.conv=[{filters:4,kernel:5,pool:2},{filters:4,kernel:5,pool:2},"
          "{filters:4,kernel:5,pool:2}]"], "model.conv.2", "keeps the 4x4 feature map"),
        (["data.source=s3"], "data.source", "auto, cache"),
        (["data.source=idx"], "data.dir", "data.source=idx"),
        (["data.val_size=-1"], "data.val_size", "[0, 60000)"),
        (["data.limit_train=0"], "data.limit_train", "[1, 55000]"),
        (["data.limit_train=55001"], "data.limit_train", "[1, 55000]"),
        (["data.val_size=0", "data.limit_train=60001"], "data.limit_train", "[1, 60000]"),
        (["train.epochs=0"], "train.epochs", "positive int"),
        (["train.batch_size=-8"], "train.batch_size", "positive int"),
        (["train.optimizer=adagrad"], "train.optimizer", "adam, sgd, rmsprop"),
        (["train.learning_rate=0"], "train.learning_rate", "(0, 10)"),
        (["train.backend=torch"], "train.backend", "tensorflow, jax"),
        (["train.noise_augment=-1"], "train.noise_augment", ">= 0"),
        (["train.early_stopping_patience=0"], "train.early_stopping_patience", "positive"),
        (["train.steps_per_execution=0"], "train.steps_per_execution", "'auto'"),
        (["train.intra_op_threads=0"], "train.intra_op_threads", "positive int"),
        (["train.inter_op_threads=-2"], "train.inter_op_threads", "positive int"),
        # XLA's CPU client has no thread-count setting: a value would be silently ignored
        (["train.backend=jax", "train.intra_op_threads=1"], "train.intra_op_threads", "jax"),
        (["+train.augment.flip=1"], "train.augment.flip", "has: rotation, shift, zoom"),
        (["train.augment.rotation=-5"], "train.augment.rotation", "[0, 180] (degrees"),
        (["train.augment.shift=0.6"], "train.augment.shift", "[0, 0.5]"),
        (["train.augment.zoom=0.9"], "train.augment.zoom", "[0, 0.5]"),
        (["train.lr_schedule.name=step"], "train.lr_schedule.name",
         "constant, cosine, exponential, reduce_on_plateau"),
        (["train.lr_schedule.final_fraction=2"], "train.lr_schedule.final_fraction", "[0, 1]"),
        (["train.lr_schedule.factor=1"], "train.lr_schedule.factor", "(0, 1)"),
        (["train.lr_schedule.patience=0"], "train.lr_schedule.patience", "positive int"),
        # early stopping would end training before a plateau cut could ever happen
        (["train.lr_schedule.name=reduce_on_plateau", "train.lr_schedule.patience=2",
          "train.early_stopping_patience=2"], "train.lr_schedule.patience",
         "less than train.early_stopping_patience (2)"),
        (["train.checkpoint.every=0"], "train.checkpoint.every", "positive int"),
        (["+train.checkpoint.keep=2"], "train.checkpoint.keep", "has: enabled, every, dir"),
        (["eval.noise_levels=[0.5,-0.25]"], "eval.noise_levels", "floats >= 0"),
        (["eval.batch_size=0"], "eval.batch_size", "positive int"),
        (["objectives=[accuracy]"], "objectives", "val_accuracy"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides, key, allowed):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as raised:
        registry.validate(cfg)
    assert raised.value.key == key
    assert f"'{key}'" in str(raised.value) and allowed in str(raised.value)


@pytest.mark.parametrize(
    "overrides",
    [[], ["model=cnn"], ["data.source=idx", "data.dir=/data/mnist"],
     ["data.val_size=0", "data.limit_train=60000"], ["data.limit_train=55000"],
     ["train.intra_op_threads=1", "train.inter_op_threads=2"], ["train.early_stopping_patience=3"],
     ["objectives=[test_accuracy,train_time_s]"], ["objectives=[test_accuracy_noise_0.5]"],
     ["train.augment.rotation=10", "train.augment.shift=0.1", "train.augment.zoom=0.1"],
     ["train.lr_schedule.name=cosine", "train.lr_schedule.final_fraction=0.05"],
     ["train.lr_schedule.name=reduce_on_plateau", "train.early_stopping_patience=3"],
     ["train.checkpoint.enabled=true", "train.checkpoint.every=3", "train.checkpoint.dir=/ck"]],
)  # fmt: skip
def test_good_configs_pass(overrides):
    registry.validate(compose_config(overrides))


def test_thread_settings_default_to_null():
    train = compose_config().train
    assert train.intra_op_threads is None and train.inter_op_threads is None


def test_every_group_file_starts_from_its_schema():
    """A group file without `defaults: [schema, ...]` would accept any key again."""
    cfg = compose_config()
    for group in schema.SCHEMAS:
        assert OmegaConf.get_type(cfg[group]) is schema.SCHEMAS[group], group
    for family in schema.FAMILIES:
        model = compose_config([f"model={family}"]).model
        assert OmegaConf.get_type(model) is schema.ModelConfig
