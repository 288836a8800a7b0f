"""A protocol added from outside the package, as a third party would: a distribution of its own
(``fakeproto-0.1.dist-info`` with its ``dcim.protocols`` entry point, and its module) on the
path of a ``dcim`` process, and not a line of the core changed.

Its plugin reads a small line protocol over TCP from a real server the test runs ("READ key,
key" -> one JSON object). ``dcim check-config`` accepts a site file with ``protocol:
fakeproto`` and its own ``fakeproto:`` options section and a profile of the protocol's own
field model; ``dcim run`` polls it and the values land in the embedded store, read back here
(this process does not have the plugin: the store does not need it). A second entry point
whose module fails to import is a config error naming the plugin and why.
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dcim.storage.sqlite import SqliteStore
from dcim.twin.ports import free_port

DCIM = [sys.executable, "-m", "dcim.cli"]

PLUGIN = '''
"""fakeproto: a protocol plugin from a third-party distribution (test)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dcim.config import Device, SiteConfig
from dcim.profiles import FieldSpec, Profile
from dcim.protocols import PollError, ProtocolPlugin
from dcim.reading import Reading


class FakeField(FieldSpec):
    key: str  # the protocol's own field key: the name the server gives the value


class FakeProfile(Profile):
    protocol: Literal["fakeproto"]
    fields: tuple[FakeField, ...] = ()


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(pattern=r"^[A-Z]+$")


class FakePoller:
    def __init__(self, cfg: SiteConfig, device: Device) -> None:
        self.device = device
        self.opts = device.options_as(FakeOptions)
        prof = cfg.profiles()[device.profile]
        assert isinstance(prof, FakeProfile)
        self.profile = prof
        self.tags = cfg.tags_of(device)
        self.timeout = cfg.timeout_of(device)

    async def poll(self) -> list[Reading]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.device.host, self.device.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise PollError("refused", str(exc)) from exc
        try:
            keys = ",".join(f.key for f in self.profile.fields)
            writer.write(f"{self.opts.command} {keys}\\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        finally:
            writer.close()
        raw = json.loads(line)
        fields = {
            f.name: float(raw[f.key]) * f.scale + f.offset
            for f in self.profile.fields
            if f.key in raw
        }
        if not fields:
            raise PollError("decode", "no value in the answer")
        return [Reading(self.profile.measurement, self.tags, fields, time.time_ns())]

    async def close(self) -> None:
        pass


plugin = ProtocolPlugin(
    name="fakeproto",
    profile=FakeProfile,
    options=FakeOptions,
    options_required=True,
    make_poller=FakePoller,
)
'''


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        command, keys = self.rfile.readline().decode().split()
        with self.server.lock:
            self.server.requests.append(command)
            self.server.energy += 1
            values = {"t": 215, "e": self.server.energy}
        self.wfile.write(json.dumps({k: values[k] for k in keys.split(",")}).encode() + b"\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.energy = 1000  # the counter the device serves, one step per request


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(free_port())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def distribution(tmp_path: Path) -> Path:
    """A path entry holding the fakeproto distribution (metadata, entry points, module)."""
    site = tmp_path / "site-packages"
    info = site / "fakeproto-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeproto\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dcim.protocols]\nfakeproto = fakeproto:plugin\nbrokenproto = brokenproto:plugin\n"
    )
    (site / "fakeproto.py").write_text(PLUGIN)
    (site / "brokenproto.py").write_text('raise ImportError("brokenproto needs libbroken.so")\n')
    return site


def site_file(tmp_path: Path, port: int, protocol: str = "fakeproto") -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "fake_meter.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "fake_meter",
                "protocol": "fakeproto",
                "measurement": "fake_meter",
                "fields": [
                    {"name": "supply_temp_c", "key": "t", "scale": 0.1},
                    {"name": "energy_wh_total", "kind": "counter", "key": "e"},
                ],
            }
        )
    )
    doc = {
        "site": {"name": "lab"},
        "defaults": {"interval_s": 0.5, "timeout_s": 0.2},
        "profile_dirs": ["profiles"],
        "storage": {
            "spool_dir": "spool",
            "sink": {"type": "embedded", "path": "store.sqlite"},
            "flush_interval_s": 0.2,
        },
        "devices": [
            {
                "name": "fake-1",
                "protocol": protocol,
                "profile": "fake_meter",
                "host": "127.0.0.1",
                "port": port,
                "fakeproto": {"command": "READ"},
            }
        ],
    }
    path = tmp_path / f"site-{protocol}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def env_with(site_packages: Path) -> dict[str, str]:
    # The repository first (dcim, collectors), then the third party's path entry.
    repo = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(site_packages)])}


def stored(store: SqliteStore, measurement: str, field: str, fn: str) -> float | None:
    rows = store.aggregate(
        measurement=measurement,
        field=field,
        start_ns=0,
        end_ns=time.time_ns() + 10**9,
        fn=fn,  # type: ignore[arg-type]
    )
    return rows[0].value if rows else None


def test_a_third_party_protocol_is_configured_polled_and_stored(
    tmp_path: Path, server: _Server, distribution: Path
) -> None:
    env = env_with(distribution)
    site = site_file(tmp_path, server.server_address[1])
    check = subprocess.run(
        [*DCIM, "check-config", str(site)], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "1 devices (1 fakeproto)" in check.stdout

    run = subprocess.Popen(
        [*DCIM, "run", str(site)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(server.requests) < 3:
            time.sleep(0.1)
        time.sleep(0.5)  # the forwarder's flush interval is 0.2 s
    finally:
        run.send_signal(signal.SIGTERM)  # stops cleanly: the spool is forwarded first
        _out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err.decode()
    assert len(server.requests) >= 3 and set(server.requests) == {"READ"}, err.decode()

    store = SqliteStore(tmp_path / "store.sqlite", read_only=True)
    try:
        polls = len(server.requests)
        assert stored(store, "fake_meter", "supply_temp_c", "count") == polls
        assert stored(store, "fake_meter", "supply_temp_c", "min") == pytest.approx(21.5)
        assert stored(store, "fake_meter", "supply_temp_c", "max") == pytest.approx(21.5)
        # the counter the server stepped once per request, every step stored
        assert stored(store, "fake_meter", "energy_wh_total", "first") == 1001
        assert stored(store, "fake_meter", "energy_wh_total", "last") == 1000 + polls
        # the scheduler's health rows for the device, tagged with its protocol
        rows = store.aggregate(
            measurement="dcim_poll",
            field="up",
            start_ns=0,
            end_ns=time.time_ns(),
            fn="min",
            group_by=("device", "protocol"),
        )
        assert [(r.tags, r.value) for r in rows] == [
            ({"device": "fake-1", "protocol": "fakeproto"}, 1.0)
        ]
    finally:
        store.close()


def test_a_plugin_that_fails_to_load_is_a_config_error_naming_it(
    tmp_path: Path, distribution: Path
) -> None:
    site = site_file(tmp_path, free_port(), protocol="brokenproto")
    check = subprocess.run(
        [*DCIM, "check-config", str(site)],
        env=env_with(distribution),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2
    line = next(x for x in check.stderr.splitlines() if "brokenproto" in x)
    assert f"{site}:" in line and "devices[0](fake-1).protocol" in line
    assert "protocol plugin 'brokenproto' from brokenproto:plugin" in line
    assert "failed to load: ImportError: brokenproto needs libbroken.so" in line


def test_without_its_distribution_the_protocol_is_unknown(tmp_path: Path) -> None:
    site = site_file(tmp_path, free_port())
    check = subprocess.run(
        [*DCIM, "check-config", str(site)],
        env=env_with(tmp_path / "nothing-here"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2
    line = site.read_text().splitlines().index("  protocol: fakeproto") + 1
    assert (
        f"{site}:{line}: devices[0](fake-1).protocol: unknown protocol 'fakeproto'" in check.stderr
    )
    assert "the registered protocols are: modbus, mqtt" in check.stderr
