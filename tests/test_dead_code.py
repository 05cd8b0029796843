"""No dead code: vulture finds nothing unused in the plugin package or the app.

Tests and benchmarks count as users. What frameworks call by name is allowed in
dead_code_allowed.py; a config dataclass field is allowed by rule (Hydra and the classes it
instantiates read them by name).
"""

from __future__ import annotations

from pathlib import Path

import vulture

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "optuna_mlflow_sweeper"
CHECKED = (PLUGIN / "hydra_plugins", ROOT / "mnist_sweep")
USERS = (PLUGIN / "tests", ROOT / "tests", ROOT / "benchmarks")
ALLOWED = Path(__file__).with_name("dead_code_allowed.py")
CONFIG_MODULES = {PLUGIN / "hydra_plugins" / "optuna_mlflow_sweeper" / "config.py",
                  ROOT / "mnist_sweep" / "config" / "schema.py",
                  ROOT / "mnist_sweep" / "config" / "train_options.py"}


def test_no_dead_code_in_the_plugin_or_the_app() -> None:
    finder = vulture.Vulture()
    finder.scavenge([str(p) for p in (*CHECKED, *USERS, ALLOWED)])
    dead = []
    for item in finder.get_unused_code():
        path = Path(item.filename).resolve()
        checked = any(path.is_relative_to(folder) for folder in CHECKED)
        if checked and not (item.typ == "variable" and path in CONFIG_MODULES):
            dead.append(item.get_report())
    assert not dead, "unused (delete it, or allow it in dead_code_allowed.py):\n" + "\n".join(dead)
