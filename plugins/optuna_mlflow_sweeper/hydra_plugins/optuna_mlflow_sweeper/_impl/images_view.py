"""A saved view of the MLflow UI's chart view with a sweep's trials' images side by side.

MLflow's chart view shows each image key (`mlflow.log_image(key=...)`) as one card, a picture
per run, but its defaults hide them: the card is a third of the page wide, so the runs wrap one
under another, each under its whole param list ("Show run parameters"). The UI keeps its layout
in the browser, except for views saved on the experiment (MLflow 3.x, its "Views" menu): a tag
`mlflow.sharedViewState.<id>` whose value is `{"name", "createdAt", "state"}`, `state` the
UI state as JSON, opened by `#/experiments/<id>/runs?viewStateShareKey=<id>`. The sweep's end saves
one: its trials only (a search, which also lists them flat, not folded under the parent),
best first, one full-width card per image key, pictures without params. The UI fetches images
for the first 10 runs it shows (its `NUM_RUNS_TO_SUPPORT_FOR_LOG_IMAGE`): the 10 best trials.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the UI's EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX
IMAGES_DIR = "images"  # where mlflow.log_image writes: images/<key, / as ~>+step+<n>+...
SECTION = "trials' images"
CARD_HEIGHT = 780  # px: three rows of pictures, each under its run's name


SHOWN = 10  # the UI's NUM_RUNS_TO_SUPPORT_FOR_LOG_IMAGE: runs whose images it fetches


def image_keys(client: Any, run_ids: Sequence[str]) -> list[str]:
    """The image keys the first SHOWN runs logged (the ones the view shows), read from their
    `images/` folders: one listing a run, so a sweep of thousands lists ten."""
    keys: set[str] = set()
    for run_id in run_ids[:SHOWN]:
        for item in client.list_artifacts(run_id, IMAGES_DIR):
            name = item.path.rpartition("/")[2]
            if "+step+" in name:
                keys.add(name.partition("+step+")[0].replace("~", "/"))
    return sorted(keys)


def view_state(parent_run_id: str, keys: Sequence[str], maximize: bool,
               objective: str = "objective") -> dict[str, Any]:
    """The UI state (search facets + chart layout) of the view: the parent's children, best
    `objective` first; a first section of full-width image cards, one per key, no params."""
    section = str(uuid.uuid4())
    cards = [{"type": "IMAGE", "uuid": str(uuid.uuid4()), "isGenerated": False, "deleted": False,
              "metricSectionId": section, "displayName": key, "imageKeys": [key], "step": 0,
              "showRunParams": False} for key in keys]
    return {
        "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
        "orderByKey": f"metrics.`{objective}`",
        "orderByAsc": not maximize,
        "compareRunCharts": cards,
        "compareRunSections": [{"uuid": section, "name": SECTION, "display": True,
                                "isReordered": True, "deleted": False, "isGenerated": False,
                                "columns": 1, "cardHeight": CARD_HEIGHT}],
        # our section first; the UI adds the metrics' own sections after it
        "isAccordionReordered": True,
        "runsHiddenMode": "FIRST_10_RUNS",
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": True,
    }


def save_images_view(client: Any, experiment_id: str, parent_run_id: str, name: str,
                     trial_run_ids: Sequence[str], maximize: bool,
                     objective: str = "objective") -> str | None:
    """Save the view of the sweep's trials' images on the experiment; its id (the link's
    `viewStateShareKey`), or None when none of the trials it shows logged an image. The view
    ranks trials by their metric `objective` (a multi-objective sweep's first: `objective_0`);
    `trial_run_ids` come in that order, best first."""
    keys = image_keys(client, trial_run_ids)
    if not keys:
        return None
    view_id = f"sweep-images-{parent_run_id}"
    envelope = {"name": f"{name}: trials' images", "createdAt": int(time.time() * 1000),
                "state": json.dumps(view_state(parent_run_id, keys, maximize, objective))}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + view_id, json.dumps(envelope))
    return view_id
