from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dcim.testing.servers import InfluxServer, MosquittoServer, start_influxdb, start_mosquitto


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
