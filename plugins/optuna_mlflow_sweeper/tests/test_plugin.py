"""The plugin as Hydra sees it: discovered, light to import, typed, with its own error type."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

from hydra.errors import CompactHydraException

from hydra_plugins.optuna_mlflow_sweeper.config import SweeperSettings
from hydra_plugins.optuna_mlflow_sweeper.optuna_mlflow_sweeper import OptunaMlflowSweeper

SCAN = """
import pickle, sys
from hydra_plugins.optuna_mlflow_sweeper import report   # as task code does, before Hydra starts
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
names = {f'{c.__module__}.{c.__name__}' for c in Plugins.instance().discover(Sweeper)}
assert 'hydra_plugins.optuna_mlflow_sweeper.optuna_mlflow_sweeper.OptunaMlflowSweeper' in names
heavy = {'optuna', 'mlflow', 'matplotlib', 'tensorflow', 'keras', 'sqlalchemy'} & set(sys.modules)
assert not heavy, heavy
impl = sorted(m for m in sys.modules if '._impl.' in m)
assert impl == [f'hydra_plugins.optuna_mlflow_sweeper._impl.{name}' for name in
                ('env', 'errors', 'heartbeat', 'interrupts', 'overrides', 'secrets', 'tracking',
                 'trial')], impl
pickle.dumps(report)  # by reference: the scanner did not give it a new identity
from hydra.core.config_store import ConfigStore
repo = ConfigStore.instance().repo['hydra']['sweeper']
assert 'optuna_mlflow.yaml' in repo
assert {'tpe.yaml', 'random.yaml', 'grid.yaml', 'cmaes.yaml', 'nsgaii.yaml', 'gp.yaml',
        'qmc.yaml'} <= set(repo['sampler'])
assert {'none.yaml', 'median.yaml', 'percentile.yaml', 'successive_halving.yaml',
        'hyperband.yaml'} <= set(repo['pruner'])
import hydra_plugins.optuna_mlflow_sweeper._impl.core
assert not {'tensorflow', 'keras', 'mlflow'} & set(sys.modules)
"""


def test_hydra_scanner_finds_the_plugin_and_imports_nothing_heavy() -> None:
    """Hydra scans `hydra_plugins` in every process; `_impl/` is not walked into."""
    proc = subprocess.run([sys.executable, "-c", SCAN], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_constructor_takes_the_settings_typed_and_without_defaults() -> None:
    """Hydra passes every key of the config; the defaults are config.py's alone."""
    params = list(inspect.signature(OptunaMlflowSweeper.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in dataclasses.fields(SweeperSettings)]
    assert all(p.default is inspect.Parameter.empty for p in params)
    assert all(p.annotation is not inspect.Parameter.empty for p in params)


def test_config_error_is_a_value_error_hydra_prints_compactly() -> None:
    from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError, config_error

    error = config_error("hydra.sweeper.n_jobs", 0, "an integer >= 1", "detail\nmore")
    assert isinstance(error, SweeperConfigError)
    assert isinstance(error, ValueError) and isinstance(error, CompactHydraException)
    assert str(error) == ("invalid value 0 for 'hydra.sweeper.n_jobs': allowed an integer >= 1"
                          "\n  detail\n  more")
    assert SweeperConfigError("k", "x", ["a", "b"]).allowed == "a, b"
