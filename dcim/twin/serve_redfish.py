"""The twin's Redfish BMCs: one HTTPS port per simulated server, shaped as real BMCs serve.

Each BMC serves the service root, the SessionService (login by POST, logout by DELETE,
``X-Auth-Token``; basic auth also accepted), the Chassis and Systems collections with one
member ``1``, and under the chassis both resource generations: the older ``Power`` and
``Thermal`` and the newer ``PowerSubsystem`` (``PowerSupplies`` and their ``Metrics``),
``ThermalSubsystem`` (``Fans``, ``ThermalMetrics``), ``EnvironmentMetrics`` and ``Sensors``,
every resource with its ``@odata.id`` and ``@odata.type``. Collections answer
``$expand=.($levels=1)`` (announced in ``ProtocolFeaturesSupported``). Values come from
``values(device)`` through :func:`dcim.twin.bmc.bmc_state` at each request, the same values
the SNMP agents serve.

TLS: a throwaway CA and a certificate for 127.0.0.1 made at start with ``cryptography``
(:attr:`RedfishTwin.ca_path`, :attr:`RedfishTwin.fingerprint_sha256`). For tests: per BMC,
``old_only`` (serve only Power/Thermal, as BMCs from before Redfish 2020.4 do),
``redirect_slash`` (answer ``/redfish/v1/x`` with a 308 to ``/redfish/v1/x/``, as HPE's iLO 5
adaptation guide documents), ``delay_s`` (answer every request
that late), ``refuse_tls`` (answer the TLS ClientHello with a handshake_failure alert) and
:meth:`RedfishTwin.drop_sessions` (the BMC forgets its sessions: the next request gets 401).

Run alone (benchmarks): ``python -m dcim.twin.serve_redfish --racks 30`` serves the
reference site's servers and prints one JSON line (ports, CA file, fingerprint).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from dcim.twin.bmc import BmcState, bmc_state

log = logging.getLogger(__name__)

Values = Callable[[str], Mapping[str, float | int | str]]
R = "/redfish/v1"
CH = f"{R}/Chassis/1"
_ALERT_HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
_PUBLIC = frozenset({"/redfish", "/redfish/", f"{R}", f"{R}/", f"{R}/odata", f"{R}/$metadata"})


# -- certificates -------------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path, str]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem,
    SHA-256 of the server certificate in hex). Those already in ``directory`` are reused (a
    site file written before the twin starts can name the CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_path, cert_path = directory / "ca.pem", directory / "bmc.pem"
    key_path = directory / "bmc.key"
    if ca_path.is_file() and cert_path.is_file() and key_path.is_file():
        der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        return ca_path, cert_path, key_path, hashlib.sha256(der).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dcim twin BMC CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "bmc.pem",
        directory / "bmc.key",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ca_path, cert_path, key_path, fingerprint


# -- one BMC -------------------------------------------------------------------------------------


@dataclass
class Bmc:
    name: str
    host: str
    port: int
    old_only: bool = False
    delay_s: float = 0.0
    refuse_tls: bool = False
    expand: bool = True
    redirect_slash: bool = False  # HPE iLO 5: /redfish/v1/x answers 308 to /redfish/v1/x/
    sessions: dict[str, str] = field(default_factory=dict)  # token -> session id
    requests: int = 0
    redirects: int = 0
    logins: int = 0
    logouts: int = 0
    _next_session: int = 1


def _odata(path: str, type_: str, **body: Any) -> dict[str, Any]:
    return {"@odata.id": path, "@odata.type": type_, **body}


def _link(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def _coll(path: str, type_: str, name: str, members: list[str]) -> dict[str, Any]:
    return _odata(
        path,
        type_,
        Name=name,
        **{"Members": [_link(m) for m in members], "Members@odata.count": len(members)},
    )


_OK = {"State": "Enabled", "Health": "OK"}
_ABSENT = {"State": "Absent"}


def _sensor_id(name: str) -> str:
    return name.replace(" ", "")


def resources(bmc: Bmc, st: BmcState) -> dict[str, Any]:
    """Every resource the BMC serves now (path -> body), without the session service."""
    out: dict[str, Any] = {}
    root = _odata(
        f"{R}/",
        "#ServiceRoot.v1_15_0.ServiceRoot",
        Id="RootService",
        Name="Root Service",
        RedfishVersion="1.17.0",
        UUID="92384634-2938-2342-8820-489239905423",
        Chassis=_link(f"{R}/Chassis"),
        Systems=_link(f"{R}/Systems"),
        SessionService=_link(f"{R}/SessionService"),
        Links={"Sessions": _link(f"{R}/SessionService/Sessions")},
        ProtocolFeaturesSupported={
            "ExpandQuery": {
                "ExpandAll": False,
                "Levels": bmc.expand,
                "Links": False,
                "NoLinks": bmc.expand,
                "MaxLevels": 1,
            }
        },
    )
    out[f"{R}/"] = root
    out[f"{R}/Systems"] = _coll(
        f"{R}/Systems",
        "#ComputerSystemCollection.ComputerSystemCollection",
        "Systems",
        [f"{R}/Systems/1"],
    )
    out[f"{R}/Systems/1"] = _odata(
        f"{R}/Systems/1",
        "#ComputerSystem.v1_20_0.ComputerSystem",
        Id="1",
        Name=bmc.name,
        PowerState="On",
        Status=_OK,
        Links={"Chassis": [_link(CH)]},
    )
    out[f"{R}/Chassis"] = _coll(
        f"{R}/Chassis", "#ChassisCollection.ChassisCollection", "Chassis", [CH]
    )
    chassis = _odata(
        CH,
        "#Chassis.v1_23_0.Chassis",
        Id="1",
        Name=bmc.name,
        ChassisType="RackMount",
        PowerState="On",
        Status=_OK,
        Power=_link(f"{CH}/Power"),
        Thermal=_link(f"{CH}/Thermal"),
        Links={"ComputerSystems": [_link(f"{R}/Systems/1")]},
    )
    out[CH] = chassis
    temps = [
        {
            "@odata.id": f"{CH}/Thermal#/Temperatures/{i}",
            "MemberId": str(i),
            "Name": t.name,
            "PhysicalContext": t.context,
            "ReadingCelsius": t.celsius,
            "Status": _OK if t.celsius is not None else _ABSENT,
        }
        for i, t in enumerate(st.temps + st.margins)
    ]
    fans = [
        {
            "@odata.id": f"{CH}/Thermal#/Fans/{i}",
            "MemberId": str(i),
            "Name": f.name,
            "PhysicalContext": "SystemBoard",
            "Reading": f.rpm,
            "ReadingUnits": "RPM",
            "Status": _OK if f.rpm is not None else _ABSENT,
        }
        for i, f in enumerate(st.fans)
    ]
    out[f"{CH}/Thermal"] = _odata(
        f"{CH}/Thermal",
        "#Thermal.v1_7_0.Thermal",
        Id="Thermal",
        Name="Thermal",
        Temperatures=temps,
        Fans=fans,
    )
    psus = [
        {
            "@odata.id": f"{CH}/Power#/PowerSupplies/{i}",
            "MemberId": str(i),
            "Name": p.name,
            "PowerInputWatts": p.input_w,
            "PowerOutputWatts": p.output_w,
            "LastPowerOutputWatts": p.output_w,
            "PowerSupplyType": "AC",
            "Status": _OK if p.input_w is not None else _ABSENT,
        }
        for i, p in enumerate(st.psus)
    ]
    out[f"{CH}/Power"] = _odata(
        f"{CH}/Power",
        "#Power.v1_7_0.Power",
        Id="Power",
        Name="Power",
        PowerControl=[
            {
                "@odata.id": f"{CH}/Power#/PowerControl/0",
                "MemberId": "0",
                "Name": "Server Power Control",
                "PowerConsumedWatts": st.power_w,
                "Status": _OK,
            }
        ],
        PowerSupplies=psus,
    )
    if bmc.old_only:
        return out
    chassis.update(
        PowerSubsystem=_link(f"{CH}/PowerSubsystem"),
        ThermalSubsystem=_link(f"{CH}/ThermalSubsystem"),
        EnvironmentMetrics=_link(f"{CH}/EnvironmentMetrics"),
        Sensors=_link(f"{CH}/Sensors"),
    )
    sensors: list[str] = []
    for t in st.temps + st.margins:
        sid = _sensor_id(t.name)
        path = f"{CH}/Sensors/{sid}"
        sensors.append(path)
        out[path] = _odata(
            path,
            "#Sensor.v1_9_0.Sensor",
            Id=sid,
            Name=t.name,
            ReadingType="Temperature",
            ReadingUnits="Cel",
            PhysicalContext=t.context,
            Reading=t.celsius,
            Status=_OK if t.celsius is not None else _ABSENT,
        )
    pw = f"{CH}/Sensors/PowerConsumption"
    sensors.append(pw)
    out[pw] = _odata(
        pw,
        "#Sensor.v1_9_0.Sensor",
        Id="PowerConsumption",
        Name="Chassis Power",
        ReadingType="Power",
        ReadingUnits="W",
        PhysicalContext="Chassis",
        Reading=st.power_w,
        Status=_OK,
    )
    out[f"{CH}/Sensors"] = _coll(
        f"{CH}/Sensors", "#SensorCollection.SensorCollection", "Sensors", sensors
    )
    out[f"{CH}/EnvironmentMetrics"] = _odata(
        f"{CH}/EnvironmentMetrics",
        "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
        Id="EnvironmentMetrics",
        Name="Chassis Environment Metrics",
        PowerWatts={"DataSourceUri": pw, "Reading": st.power_w},
        TemperatureCelsius={
            "DataSourceUri": f"{CH}/Sensors/{_sensor_id(st.temps[0].name)}",
            "Reading": st.inlet_temp_c,
        },
    )
    ps = f"{CH}/PowerSubsystem"
    out[ps] = _odata(
        ps,
        "#PowerSubsystem.v1_1_0.PowerSubsystem",
        Id="PowerSubsystem",
        Name="Power Subsystem",
        Status=_OK,
        PowerSupplies=_link(f"{ps}/PowerSupplies"),
    )
    psu_paths = []
    for i, p in enumerate(st.psus, start=1):
        path = f"{ps}/PowerSupplies/{i}"
        psu_paths.append(path)
        out[path] = _odata(
            path,
            "#PowerSupply.v1_5_0.PowerSupply",
            Id=str(i),
            Name=p.name,
            Status=_OK if p.input_w is not None else _ABSENT,
            Metrics=_link(f"{path}/Metrics"),
        )
        out[f"{path}/Metrics"] = _odata(
            f"{path}/Metrics",
            "#PowerSupplyMetrics.v1_1_0.PowerSupplyMetrics",
            Id="Metrics",
            Name=f"{p.name} Metrics",
            InputPowerWatts={"Reading": p.input_w},
            OutputPowerWatts={"Reading": p.output_w},
        )
    out[f"{ps}/PowerSupplies"] = _coll(
        f"{ps}/PowerSupplies",
        "#PowerSupplyCollection.PowerSupplyCollection",
        "Power Supplies",
        psu_paths,
    )
    ts = f"{CH}/ThermalSubsystem"
    out[ts] = _odata(
        ts,
        "#ThermalSubsystem.v1_3_0.ThermalSubsystem",
        Id="ThermalSubsystem",
        Name="Thermal Subsystem",
        Status=_OK,
        Fans=_link(f"{ts}/Fans"),
        ThermalMetrics=_link(f"{ts}/ThermalMetrics"),
    )
    fan_paths = []
    for i, f in enumerate(st.fans, start=1):
        path = f"{ts}/Fans/{i}"
        fan_paths.append(path)
        out[path] = _odata(
            path,
            "#Fan.v1_5_0.Fan",
            Id=str(i),
            Name=f.name,
            PhysicalContext="SystemBoard",
            SpeedPercent={"Reading": f.pct, "SpeedRPM": f.rpm},
            Status=_OK if f.rpm is not None else _ABSENT,
        )
    out[f"{ts}/Fans"] = _coll(f"{ts}/Fans", "#FanCollection.FanCollection", "Fans", fan_paths)
    out[f"{ts}/ThermalMetrics"] = _odata(
        f"{ts}/ThermalMetrics",
        "#ThermalMetrics.v1_3_0.ThermalMetrics",
        Id="ThermalMetrics",
        Name="Thermal Metrics",
        TemperatureReadingsCelsius=[
            {"DataSourceUri": f"{CH}/Sensors/{_sensor_id(t.name)}", "Reading": t.celsius}
            for t in st.temps
            if t.celsius is not None
        ],
    )
    return out


# -- the server ----------------------------------------------------------------------------------


class _RefuseTls(asyncio.Protocol):
    """Answers a ClientHello with a fatal handshake_failure alert and hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(_ALERT_HANDSHAKE_FAILURE)
        self.transport.close()


def _listen(b: Bmc) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((b.host, b.port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"Redfish BMC {b.name}: cannot listen on {b.host}:{b.port}: {exc.strerror}"
        ) from exc
    sock.setblocking(False)
    return sock


class RedfishTwin:
    """Redfish BMCs for ``devices`` (name -> (host, port); port 0: any free one, read back
    from ``bmcs[name].port`` once started), values from ``values(name)``; every BMC accepts
    ``username``/``password`` unless ``credentials`` gives its own."""

    def __init__(
        self,
        values: Values,
        devices: Mapping[str, tuple[str, int]],
        *,
        username: str = "dcim",
        password: str = "twin-password",
        refuse_tls: frozenset[str] = frozenset(),
        work_dir: Path | None = None,
        credentials: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.values = values
        self.username, self.password = username, password
        self.bmcs = {n: Bmc(n, h, p, refuse_tls=n in refuse_tls) for n, (h, p) in devices.items()}
        self._by_port: dict[int, Bmc] = {}
        self._dir = work_dir or Path(tempfile.mkdtemp(prefix="dcim-redfish-twin-"))
        self.ca_path, self.cert_path, self.key_path, self.fingerprint_sha256 = make_certificates(
            self._dir
        )
        self._runner: web.AppRunner | None = None
        self._raw: list[asyncio.AbstractServer] = []
        creds = credentials or {}
        self._creds = {n: creds.get(n, (username, password)) for n in self.bmcs}

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        ctx = self.ssl_context()
        loop = asyncio.get_running_loop()
        try:
            for b in self.bmcs.values():
                sock = _listen(b)
                b.port = sock.getsockname()[1]  # port 0: the one the system gave
                self._by_port[b.port] = b
                if b.refuse_tls:
                    self._raw.append(await loop.create_server(_RefuseTls, sock=sock))
                    continue
                await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        except BaseException:
            await self.stop()
            raise
        log.info("Redfish twin: %d BMCs", len(self.bmcs))

    async def stop(self) -> None:
        for srv in self._raw:
            srv.close()
        self._raw.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- switches (tests) ----------------------------------------------------------------------
    def set_old_only(self, name: str, old_only: bool = True) -> None:
        self.bmcs[name].old_only = old_only

    def set_delay(self, name: str, delay_s: float) -> None:
        self.bmcs[name].delay_s = delay_s

    def set_redirect_slash(self, name: str, redirect: bool = True) -> None:
        self.bmcs[name].redirect_slash = redirect

    def set_expand(self, name: str, expand: bool) -> None:
        self.bmcs[name].expand = expand

    def set_unreachable(self, name: str, unreachable: bool = True) -> None:
        """A BMC that accepts connections and never answers (hung web server)."""
        self.bmcs[name].delay_s = 3600.0 if unreachable else 0.0

    def drop_sessions(self, name: str) -> None:
        self.bmcs[name].sessions.clear()

    def state(self, name: str) -> BmcState:
        """What BMC ``name`` reports now (the ground truth of its answers)."""
        return bmc_state(self.values(name))

    # -- requests ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        bmc = self._by_port.get(sock[1]) if sock else None
        if bmc is None:
            return web.json_response({"error": "no BMC here"}, status=404)
        bmc.requests += 1
        if bmc.delay_s:
            await asyncio.sleep(bmc.delay_s)
        if bmc.redirect_slash and request.method == "GET" and not request.path.endswith("/"):
            bmc.redirects += 1
            location = (
                request.path + "/" + (f"?{request.query_string}" if request.query_string else "")
            )
            raise web.HTTPPermanentRedirect(location)
        path = request.path.rstrip("/") or "/"
        if path == R:
            path = f"{R}/"
        sessions = f"{R}/SessionService/Sessions"
        if request.method == "POST" and path == sessions:
            return self._login(bmc, request, await request.read())
        if path not in _PUBLIC and not self._authorised(bmc, request):
            return _error(401, "Base.1.15.NoValidSession", "no valid session")
        if request.method == "DELETE" and path.startswith(sessions + "/"):
            sid = path.rsplit("/", 1)[1]
            token = next((t for t, s in bmc.sessions.items() if s == sid), None)
            if token is None:
                return _error(404, "Base.1.15.ResourceMissingAtURI", path)
            del bmc.sessions[token]
            bmc.logouts += 1
            return web.Response(status=204)
        if request.method != "GET":
            return _error(405, "Base.1.15.OperationNotAllowed", request.method)
        if path in _PUBLIC - {f"{R}/"}:
            return web.json_response({"v1": f"{R}/"})
        if path.startswith(f"{R}/SessionService"):
            return self._session_service(bmc, path)
        try:
            state = self.state(bmc.name)
        except Exception:  # noqa: BLE001 - a model failure is the BMC's 500, not a crash
            log.exception("%s: values() failed", bmc.name)
            return _error(500, "Base.1.15.InternalError", "model failure")
        res = resources(bmc, state)
        body = res.get(path)
        if body is None:
            return _error(404, "Base.1.15.ResourceMissingAtURI", path)
        if "$expand" in request.query and "Members" in body and bmc.expand:
            body = dict(body, Members=[res.get(m["@odata.id"], m) for m in body["Members"]])
        return web.json_response(body, headers={"OData-Version": "4.0"})

    def _authorised(self, bmc: Bmc, request: web.Request) -> bool:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            return token in bmc.sessions
        user, password = self._creds[bmc.name]
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return secrets.compare_digest(request.headers.get("Authorization", ""), basic)

    def _login(self, bmc: Bmc, request: web.Request, raw: bytes) -> web.Response:
        try:
            creds = json.loads(raw)
        except ValueError:
            return _error(400, "Base.1.15.MalformedJSON", "not JSON")
        if (
            not isinstance(creds, dict)
            or (
                creds.get("UserName"),
                creds.get("Password"),
            )
            != self._creds[bmc.name]
        ):
            return _error(401, "Base.1.15.InsufficientPrivilege", "bad credentials")
        token = secrets.token_hex(16)
        sid = str(bmc._next_session)
        bmc._next_session += 1
        bmc.sessions[token] = sid
        bmc.logins += 1
        path = f"{R}/SessionService/Sessions/{sid}"
        body = _odata(
            path, "#Session.v1_7_0.Session", Id=sid, Name="User Session", UserName=creds["UserName"]
        )
        return web.json_response(
            body, status=201, headers={"X-Auth-Token": token, "Location": path}
        )

    def _session_service(self, bmc: Bmc, path: str) -> web.Response:
        base = f"{R}/SessionService"
        if path == base:
            return web.json_response(
                _odata(
                    base,
                    "#SessionService.v1_1_9.SessionService",
                    Id="SessionService",
                    Name="Session Service",
                    ServiceEnabled=True,
                    SessionTimeout=1800,
                    Sessions=_link(f"{base}/Sessions"),
                )
            )
        if path == f"{base}/Sessions":
            return web.json_response(
                _coll(
                    path,
                    "#SessionCollection.SessionCollection",
                    "Sessions",
                    [f"{path}/{s}" for s in bmc.sessions.values()],
                )
            )
        sid = path.rsplit("/", 1)[1]
        if sid in bmc.sessions.values():
            return web.json_response(
                _odata(
                    path,
                    "#Session.v1_7_0.Session",
                    Id=sid,
                    Name="User Session",
                    UserName=self._creds[bmc.name][0],
                )
            )
        return _error(404, "Base.1.15.ResourceMissingAtURI", path)


def _error(status: int, message_id: str, text: str) -> web.Response:
    return web.json_response(
        {"error": {"code": message_id, "message": text, "@Message.ExtendedInfo": []}},
        status=status,
    )


def main() -> None:  # pragma: no cover - the benchmarks' child process
    import argparse
    import time

    from dcim.config import SiteConfig
    from dcim.twin.model import SiteModel
    from dcim.twin.site import paris_chapelle

    ap = argparse.ArgumentParser(description="serve the reference site's BMCs over Redfish")
    ap.add_argument("--racks", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    doc = paris_chapelle(racks=args.racks)
    doc["devices"] = [d for d in doc["devices"] if d["profile"] == "bmc_server"]
    cfg = SiteConfig.model_validate(doc)
    model = SiteModel(cfg, t0=time.time())
    devices = {d.name: ("127.0.0.1", 0) for d in cfg.devices}  # ports: the system's

    def values(name: str) -> Mapping[str, float | int]:
        return model.values(name, time.time())

    async def run() -> None:
        twin = RedfishTwin(values, devices)
        await twin.start()
        print(
            json.dumps(
                {
                    "ports": {n: b.port for n, b in twin.bmcs.items()},
                    "ca": str(twin.ca_path),
                    "fingerprint": twin.fingerprint_sha256,
                    "username": twin.username,
                    "password": twin.password,
                }
            ),
            flush=True,
        )
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":  # pragma: no cover
    main()
