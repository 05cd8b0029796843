"""The saved MLflow UI view of a sweep's trials' images, on a real MLflow store.

MLflow's chart view reads a saved view from the experiment tag `mlflow.sharedViewState.<id>`
(an envelope `{"name", "createdAt", "state"}`); the view lists the parent's children best first
and shows one full-width card per image key, pictures without the param lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from hydra_plugins.optuna_mlflow_sweeper._impl import images_view, tracking


def _runs(client: MlflowClient, parent: str, n: int, experiment: str) -> list[str]:
    return [client.create_run(experiment, tags={"mlflow.parentRunId": parent},
                              run_name=f"trial-{i}").info.run_id for i in range(n)]


def test_the_trials_images_get_a_view_of_their_own(mlflow_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(mlflow_template.read_bytes())
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment).info.run_id
    with_images, without = _runs(client, parent, 2, experiment)
    digit = np.zeros((28, 28), dtype=np.uint8)
    client.log_image(with_images, digit, key="images/confusion_matrix", step=0)
    client.log_image(with_images, digit, key="misclassified", step=0)

    assert images_view.image_keys(client, [without]) == []
    # the view shows the first SHOWN runs' images: a run after them is not listed
    assert images_view.image_keys(client, [without] * images_view.SHOWN + [with_images]) == []
    assert images_view.image_keys(client, [without] * (images_view.SHOWN - 1) + [with_images])
    # no trial logged an image: nothing saved
    assert images_view.save_images_view(client, experiment, parent, "s", [without], True) is None
    assert not [k for k in client.get_experiment(experiment).tags
                if k.startswith(images_view.VIEW_TAG_PREFIX)]

    view = images_view.save_images_view(client, experiment, parent, "s", [without, with_images],
                                        maximize=False)
    envelope = json.loads(client.get_experiment(experiment).tags[
        images_view.VIEW_TAG_PREFIX + view])
    assert envelope["name"] == "s: trials' images" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{parent}'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`objective`", True)  # minimize
    [section] = state["compareRunSections"]
    assert section["columns"] == 1 and state["isAccordionReordered"]
    cards = state["compareRunCharts"]
    assert [c["imageKeys"] for c in cards] == [["images/confusion_matrix"], ["misclassified"]]
    assert all(c["type"] == "IMAGE" and c["showRunParams"] is False
               and c["metricSectionId"] == section["uuid"] for c in cards)
    # a multi-objective sweep's trials ranked by the first objective's metric
    assert images_view.view_state(parent, ["k"], True, "objective_0")["orderByKey"] == (
        "metrics.`objective_0`")
    link = tracking.view_link("http://h:5000/#/experiments/1?workflowType=machine_learning",
                              view)
    assert link == (f"http://h:5000/#/experiments/1/runs?viewStateShareKey={view}"
                    "&compareRunsMode=CHART&workflowType=machine_learning")
