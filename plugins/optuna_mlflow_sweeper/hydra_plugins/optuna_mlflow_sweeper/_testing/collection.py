"""How the collected tests are scheduled and tiered: which ones pytest-xdist keeps in one worker
process (`--dist loadgroup`; every other test goes to whichever worker is free), and which ones
the quick tier (`-m "not slow"`) leaves out.

A test that uses a server or the Ray cluster is slow (the quick tier starts no server). A server
test goes to whichever worker is free: each worker starts its own (session fixtures, on first
use), so the outage tests, which stop and restart theirs, never cut off a sweep of the other
worker, and the slow server tests spread over both workers instead of queueing on one. The Ray
cluster's tests stay on one worker, one after another: a second cluster would cost ~5 s of CPU
to start, and the one cluster is stopped once they are done (ray_cluster.py). A test that uses a
module-scoped fixture (a trained model, an uninterrupted run to compare with) stays with its
module's other such tests, so the fixture is made once. The hook comes with the fixtures
(`plugin.py`, which both test trees load); a test marked `xdist_group` by hand keeps its mark.

The slow tests come first (in pytest-randomly's order among themselves, which it shuffles before
this hook runs): xdist hands out work in collection order, and a long test that starts last
leaves one worker running it alone while the other idles.
"""

from __future__ import annotations

import pytest

# fixtures that start a server or a cluster: the tests that use them are slow
SERVERS = ("postgres", "mlflow_server", "mlflow_auth_server", "ray_cluster")


def group_of(item: pytest.Item) -> str | None:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d[-1].scope in ("module", "class", "package") for d in defs):
        return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in SERVERS) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        group = "ray_cluster" if "ray_cluster" in names else group_of(item)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first
