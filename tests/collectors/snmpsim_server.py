"""snmpsim (PyPI ``snmpsim``) as a real SNMP agent for the tests: it serves ``.snmprec``
recordings, the community being the file's name, on 127.0.0.1 at a free UDP port.

Its data and cache directories live in their own world-readable temporary directory, so the
same helper works for a developer's own user and for root (see ``start``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dcim.twin.ports import free_ports


@dataclass
class Snmpsim:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def start(self, *extra: str, engine_id: str | None = None) -> None:
        """``engine_id``: the agent's SNMPv3 engine ID in hex (default: snmpsim's own)."""
        binary = Path(sys.executable).with_name("snmpsim-command-responder")
        if not binary.exists():
            raise RuntimeError("snmpsim is not installed: pip install -e '.[test]' (see README)")
        args = [
            str(binary),
            # an engine's options follow its --v3-engine-id: it goes first
            *([f"--v3-engine-id={engine_id}"] if engine_id else []),
            f"--data-dir={self.data_dir}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
            f"--cache-dir={self.workdir / 'cache'}",
            "--logging-method=null",
            *extra,
        ]
        env = dict(os.environ)
        if os.geteuid() == 0:
            # As root snmpsim wants to drop to another user, who cannot read a Python installed
            # under /root (pyenv) and then fails on its first late import. A throwaway agent on
            # loopback serving a temporary directory may stay root instead.
            env["SNMPSIM_ALLOW_ROOT"] = "true"
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )

    def wait_ready(self, community: str, timeout: float = 30.0) -> None:
        """Until the agent answers a GET of sysUpTime.0 for ``community``."""
        from pyasn1.codec.ber import decoder, encoder
        from pysnmp.proto import api

        p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
        pdu = p.GetRequestPDU()
        p.apiPDU.set_defaults(pdu)
        p.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 2, 1, 1, 3, 0), p.Null(""))])
        msg = p.Message()
        p.apiMessage.set_defaults(msg)
        p.apiMessage.set_community(msg, community)
        p.apiMessage.set_pdu(msg, pdu)
        data = encoder.encode(msg)
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"snmpsim exited ({self.proc.returncode}): {err[-2000:]}")
                sock.sendto(data, ("127.0.0.1", self.port))
                try:
                    rsp, _ = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                decoder.decode(rsp, asn1Spec=p.Message())
                return
        raise TimeoutError(f"snmpsim on {self.port} not ready after {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_snmpsim(
    recordings: Mapping[str, Path | str], *extra: str, engine_id: str | None = None
) -> Snmpsim:
    """Serve ``{community: .snmprec file or its text}``; returns once every community answers."""
    workdir = Path(tempfile.mkdtemp(prefix="dcim-snmpsim-"))
    for sub in ("data", "cache"):
        (workdir / sub).mkdir()
    for community, rec in recordings.items():
        text = rec.read_text() if isinstance(rec, Path) else rec
        (workdir / "data" / f"{community}.snmprec").write_text(text)
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    sim = Snmpsim(free_ports(1, kind=socket.SOCK_DGRAM), workdir)
    sim.start(*extra, engine_id=engine_id)
    try:
        for community in recordings:
            sim.wait_ready(community)
    except BaseException:
        sim.cleanup()
        raise
    return sim
