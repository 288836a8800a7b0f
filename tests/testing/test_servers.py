"""dcim.testing.servers: the launchers the tests and benchmarks start real servers with."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcim.testing.servers import need, start_influxdb, start_mosquitto, wait_until


def test_a_missing_binary_names_its_debian_package() -> None:
    with pytest.raises(RuntimeError, match="install the Debian package 'no-such-package'"):
        need("no-such-binary-for-dcim", "no-such-package")


def test_wait_until_names_what_was_not_ready() -> None:
    with pytest.raises(TimeoutError, match="the thing not ready after 0.1 s"):
        wait_until(lambda: False, 0.1, "the thing")


def test_influxdb_stops_and_starts_again_on_its_port(tmp_path: Path) -> None:
    srv = start_influxdb(tmp_path / "influxdb")
    try:
        port = srv.port
        assert srv.ready()
        srv.stop()
        assert not srv.ready()
        srv.start()  # same port, same data directory
        assert srv.port == port and srv.ready()
    finally:
        srv.stop()


def test_mosquitto_listens_on_loopback(tmp_path: Path) -> None:
    srv = start_mosquitto(tmp_path / "mosquitto")
    try:
        assert srv.ready()
        assert (
            "listener " + str(srv.port) + " 127.0.0.1"
            in (tmp_path / "mosquitto" / "mosquitto.conf").read_text()
        )
    finally:
        srv.stop()
    assert not srv.ready()
