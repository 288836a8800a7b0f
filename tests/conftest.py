from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dcim.testing.servers import InfluxServer, MosquittoServer, start_influxdb, start_mosquitto

# Test files that assert real-time cadence or latency to the tens of milliseconds (live
# collectors, schedulers, a slow disk): when `make test` runs the tests in two processes
# (pytest-xdist), each of their tests runs alone, the other process waiting between two of its
# own tests (set-up and tear-down included), so that they have the machine as in one process.
ALONE = frozenset(
    {
        "tests/test_end_to_end.py",
        "tests/test_faults.py",
        "tests/test_scheduler.py",
        "tests/test_spool_commit.py",
        "tests/collectors/test_hostile.py",
        "tests/collectors/modbus/test_hostile.py",
        "tests/collectors/snmp/test_shared_agent.py",
        "tests/collectors/redfish/test_cadence.py",
    }
)


def _waiting(want: Path) -> bool:
    """Whether the process that wrote ``want`` is still there (a crashed one is not waited)."""
    try:
        os.kill(int(want.read_text()), 0)
    except (OSError, ValueError):  # gone, or the file just being written or removed
        return False
    return True


@contextmanager
def _turn(path: Path, worker: str, alone: bool) -> Iterator[None]:
    """A shared lock for a test, an exclusive one for a test that runs alone (flock on a file
    the run's processes share). A process waiting to run alone is not passed by new shared
    turns: it says so in a file of its own, and the others wait while one is there."""
    want = path.with_name(f"{path.name}.want-{worker}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if alone:
            want.write_text(str(os.getpid()))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            finally:
                want.unlink(missing_ok=True)
        else:
            while any(_waiting(p) for p in path.parent.glob(f"{path.name}.want-*") if p != want):
                time.sleep(0.05)
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:  # one process: nothing to share
        return (yield)
    lock = Path(tempfile.gettempdir()) / f"dcim-tests-{workerinput['testrunuid']}.lock"
    rel = item.path.relative_to(item.config.rootpath).as_posix()
    with _turn(lock, workerinput["workerid"], rel in ALONE):
        return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        lock = Path(tempfile.gettempdir()) / f"dcim-tests-{workerinput['testrunuid']}.lock"
        lock.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    srv = start_influxdb(tmp_path_factory.mktemp("influxdb"))
    yield srv
    srv.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    srv = start_mosquitto(tmp_path / "mosquitto")
    yield srv
    srv.stop()
