"""The conditional search spaces suggest only models that validate and build."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from mnist_sweep import search_spaces
from mnist_sweep.schema import check_model


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
                                             for k, v in overrides.items()})
        check_model(model)  # raises on a stack that shrinks the image to nothing
        depths.add(len(model.conv if family == "cnn" else model.hidden))
        study.tell(trial, 0.5)
    assert len(depths) > 1 or space is search_spaces.dense_width
