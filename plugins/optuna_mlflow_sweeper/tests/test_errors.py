"""A bad value's error names its key, the value and what is allowed, in one line a user reads
(a detail, when there is one, indented below it), and is caught as a ValueError too."""

from __future__ import annotations

import pytest
from hydra.errors import CompactHydraException

from hydra_plugins.optuna_mlflow_sweeper._impl.errors import SweeperConfigError, config_error


@pytest.mark.parametrize(("value", "allowed", "detail", "message"), [
    (0, "an integer >= 1", None,
     "invalid value 0 for 'hydra.sweeper.n_trials': allowed an integer >= 1"),
    ("up", ["minimize", "maximize"], None,
     "invalid value 'up' for 'hydra.sweeper.n_trials': allowed minimize, maximize"),
    (None, "an integer >= 1", "line one\nline two\n",
     "invalid value None for 'hydra.sweeper.n_trials': allowed an integer >= 1\n"
     "  line one\n  line two"),
])
def test_the_message_names_the_key_the_value_and_what_is_allowed(value, allowed, detail,
                                                                 message) -> None:
    error = config_error("hydra.sweeper.n_trials", value, allowed, detail)
    assert str(error) == message
    assert error.key == "hydra.sweeper.n_trials" and error.value == value
    assert isinstance(error, ValueError) and isinstance(error, CompactHydraException)
    with pytest.raises(SweeperConfigError):
        raise error
