"""How the collected tests are scheduled and tiered: which ones pytest-xdist keeps in one worker
process (`--dist loadgroup`; every other test goes to whichever worker is free), and which ones
the quick tier (`-m "not slow"`) leaves out.

A test that uses a server or the Ray cluster joins their group, so one worker starts them (once,
on first use) instead of both, and is slow: the quick tier starts no server. A test that uses a
module-scoped fixture (a trained model, an uninterrupted run to compare with) stays with its
module's other such tests, so the fixture is made once. Both test trees' conftests import the
hook; a test marked `xdist_group` by hand keeps its mark.
"""

from __future__ import annotations

import pytest

# fixture -> the group of the tests that use it (one worker makes it)
SHARED = {"postgres": "services", "mlflow_server": "services", "mlflow_auth_server": "services",
          "ray_cluster": "ray"}


def group_of(item: pytest.Item) -> str | None:
    names = getattr(item, "fixturenames", ())
    for fixture, group in SHARED.items():
        if fixture in names:
            return group
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d[-1].scope in ("module", "class", "package") for d in defs):
        return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = group_of(item)
        if group in SHARED.values() and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
