"""The documentation: the configuration reference documents every key a user composes, the docs
site builds strictly with it, and the README stays short and opens with the commands CI runs.

The reference is generated from the schemas' attribute docstrings (mnist_sweep/config/reference.py)
when the site is built, so a key added anywhere without a meaning fails here.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from dataclasses import dataclass

from mnist_sweep.config import reference
from tests.helpers import ROOT

INSTALL = ("python3 -m venv .venv && .venv/bin/pip install -e plugins/optuna_mlflow_sweeper "
           "-e '.[dev]' && .venv/bin/mnist-sweep -m sweep=quickstart")
TESTS = ".venv/bin/python -m pytest -n 2"


@dataclass
class HalfDocumented:
    documented: int = 1
    """A key with a meaning."""
    bare: int = 2


def test_reference_documents_every_composed_key():
    rows = reference.all_rows()
    assert reference.missing(reference.composed_keys(), rows) == []
    by_path = {row.path: row for row in rows}
    for path in ("objectives", "model.hidden[].units", "train.lr_schedule.patience",
                 "hydra.sweeper.n_trials", "hydra.sweeper.mlflow.champion_trial",
                 "hydra.sweeper.sampler.n_startup_trials", "hydra.sweeper.pruner.min_resource"):
        assert by_path[path].meaning, path
    epochs = by_path["train.epochs"]
    assert (epochs.type, epochs.default) == ("int", 5)
    assert epochs.meaning == "Epochs to train each model (the most, with early stopping)."
    assert by_path["data.limit_train"].type == "int \\| null"


def test_a_key_without_a_meaning_is_named():
    rows = list(reference.rows(HalfDocumented, "x."))
    assert [(r.path, r.meaning) for r in rows] == [("x.documented", "A key with a meaning."),
                                                    ("x.bare", "")]
    assert reference.missing(["x.documented", "x.bare", "x.other"], rows) == [
        "x.other", "x.bare (no meaning)"]


def test_site_builds_strictly_with_the_whole_reference(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "index.html").read_text()
    absent = [row.path for row in reference.all_rows()
              if f"<code>{html.escape(row.path)}</code>" not in page]
    assert absent == []
    assert (tmp_path / "site" / "tutorial" / "index.html").is_file()


def test_readme_is_short_and_opens_with_the_commands_ci_runs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert [b.strip() for b in blocks[:2]] == [INSTALL, TESTS]
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ").splitlines()  # joined
    assert ci[-1] == TESTS  # CI's last command is the README's test command
    assert "'.[dev" in next(line for line in ci if "pip install" in line and "-e" in line)
    for target in re.findall(r"\]\(((?:docs|plugins)/[^)#]+)", text):  # its links lead somewhere
        assert (ROOT / target).exists(), target
