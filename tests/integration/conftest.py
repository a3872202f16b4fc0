from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from aijobs.demo import write_demo_data
from tests.integration.harness import System
from tests.integration.invariants import redis_problems, sqlite_problems
from tests.redis_server import own_redis, prefix_for, redis_server  # noqa: F401 - fixtures

STORES = ("sqlite", "redis")
FAILED = pytest.StashKey[bool]()  # set on a test item once one of its phases failed


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stores(*kinds): run the module's `system` tests once per store kind "
        "(sqlite, redis); unmarked tests run on sqlite only",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("stores")
    if marker is not None and "store_kind" in metafunc.fixturenames:
        kinds = marker.args or STORES
        assert set(kinds) <= set(STORES), kinds
        metafunc.parametrize("store_kind", kinds)


@pytest.fixture
def store_kind() -> str:
    """sqlite, unless the test's module is marked @pytest.mark.stores(...)."""
    return "sqlite"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "data"
    root.mkdir()
    write_demo_data(root)
    slow = root / "slow.csv"  # enough rows that a big forest takes seconds, not milliseconds
    lines = ["a,b,c,d,label"]
    lines += [
        f"{i % 7},{i % 11},{i % 13},{(i * 7) % 17},{'x' if i % 3 else 'y'}" for i in range(3000)
    ]
    slow.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def system(
    tmp_path: Path, demo_root: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[System]:
    """The API and workers as real processes, on the store `store_kind` names.

    Redis: the session's shared redis-server, under a key prefix of this test's own. Afterwards
    (all processes stopped), the store's indexes must be consistent: the chaos oracle runs after
    every test.
    """
    s = System(home=tmp_path / "var", data=demo_root)
    if store_kind == "redis":
        server = request.getfixturevalue("redis_server")
        s.env_overrides["AIJOBS_STORE_URL"] = server.url
        s.env_overrides["AIJOBS_REDIS_PREFIX"] = prefix_for(tmp_path)
    yield s
    s.stop_all()
    if request.node.stash.get(FAILED, False):
        # A failure under CI is often a process that did something unexpected: say what it said.
        for log in sorted(s.home.glob("*.log")):
            text = log.read_text(errors="replace")[-20_000:]
            sys.stdout.write(f"----- {log.name} -----\n{text}\n")
    check_store(s)


def check_store(s: System) -> None:
    """Assert the store behind `s` is consistent (call with its processes stopped or idle)."""
    url = s.env.get("AIJOBS_STORE_URL", "")
    if url.startswith("redis"):
        problems = redis_problems(url, s.env["AIJOBS_REDIS_PREFIX"])
    else:
        problems = sqlite_problems(s.home / "aijobs.db")
    assert problems == [], problems


@pytest.fixture
def running(system: System) -> System:
    """API plus one sklearn worker."""
    system.start_api()
    system.start_worker("sklearn")
    return system


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[System]:
    """The API and one sklearn worker, shared by every test of a module."""
    system = System(home=tmp_path_factory.mktemp("clients") / "var", data=demo_root)
    try:
        system.start_api()
        system.start_worker("sklearn")
        yield system
    finally:
        system.stop_all()
