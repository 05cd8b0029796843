"""The conditional search spaces suggest only models that validate and build."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from mnist_sweep.config import search_spaces
from mnist_sweep.config.schema import check_model, check_train


@pytest.mark.parametrize("space, family", [
    (search_spaces.cnn_blocks, "cnn"),
    (search_spaces.dense_layers, "dense"),
    (search_spaces.dense_width, "dense"),
])
def test_every_suggestion_is_a_valid_model(compose, space, family):
    base = compose([f"model={family}"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    depths = set()
    for _ in range(200):
        trial = study.ask()
        overrides = space(base, trial)
        model = OmegaConf.merge(base.model, {k.removeprefix("model."): v
                                             for k, v in overrides.items()
                                             if k.startswith("model.")})
        train = OmegaConf.merge(base.train, {k.removeprefix("train."): v
                                             for k, v in overrides.items()
                                             if k.startswith("train.")})
        check_model(model)  # raises on a stack that shrinks the image to nothing
        check_train(train)
        depths.add(len(model.conv if family == "cnn" else model.hidden))
        study.tell(trial, 0.5)
    assert len(depths) > 1 or space is search_spaces.dense_width


def test_augmentation_is_on_or_off_with_one_strength(compose):
    base = compose()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        augment = search_spaces.augmentation(trial)["train.augment"]
        on = trial.params["train.augment.on"]
        seen.add(on)
        if on:
            s = trial.params["train.augment.strength"]
            assert augment == pytest.approx({"rotation": 12 * s, "shift": 0.12 * s,
                                             "zoom": 0.12 * s}, rel=1e-3)
        else:
            assert augment == {"rotation": 0.0, "shift": 0.0, "zoom": 0.0}
        check_train(OmegaConf.merge(base.train, {"augment": augment}))
        study.tell(trial, 0.5)
    assert seen == {True, False}


def test_cnn_candidates_never_narrow_block_to_block(compose):
    base = compose(["model=cnn"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(100):
        trial = study.ask()
        blocks = search_spaces.cnn_blocks(base, trial)["model.conv"]
        filters = [b["filters"] for b in blocks]
        assert filters == sorted(filters) and 16 <= filters[0] and filters[-1] <= 64
        assert 2 <= len(blocks) <= 3
        study.tell(trial, 0.5)
