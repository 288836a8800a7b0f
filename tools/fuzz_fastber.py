"""Differential fuzzing of the compiled SNMP decoder under AddressSanitizer.

Builds ``collectors/snmp/_fastber.c`` with ``-fsanitize=address,undefined`` and
``-DFASTBER_FUZZ`` (each datagram copied into a buffer of its exact size, so that a read one
byte past its end is reported), loads it in a Python started with libasan preloaded, and
decodes random damage of real-shaped messages (the net-snmp and snmpd vectors of
tests/collectors/snmp/test_wire.py and GETBULK answers built with the encoder: changed,
inserted and deleted bytes, cuts, long-form lengths) with both it and wire.py's Python
decoder: any difference in result or error message stops the run, as does any ASan report.

    .venv/bin/python tools/fuzz_fastber.py [--count 300000] [--seed 1]

Needs gcc and its libasan (Debian: gcc). Not part of the tests (minutes of CPU); the tests run
the same comparison on fewer inputs with hypothesis.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "collectors" / "snmp" / "_fastber.c"


def build(out: Path) -> None:
    include = sysconfig.get_paths()["include"]
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer"]
    cmd += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    cmd += ["-DFASTBER_FUZZ", f"-I{include}", str(SOURCE), "-o", str(out)]
    subprocess.run(cmd, check=True)


def seeds() -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from collectors.snmp import wire as w
    from tests.collectors.snmp import test_wire as t

    out = [t.NETSNMP_GET, t.NETSNMP_GETNEXT_V1, t.NETSNMP_GETBULK]
    out += [t.SNMPD_V2C_RESPONSE, t.SNMPD_V1_NO_SUCH_NAME]
    rng = random.Random(0)
    for n in (1, 5, 25, 60):
        vbs: list[w.VarBind] = []
        for i in range(n):
            oid = w.encode_oid((1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1, rng.choice([5, 7]), i))
            tag = rng.choice(sorted(w.TAG_NAMES))
            value: Any
            if tag == w.INTEGER:
                value = rng.randint(-(2**31), 2**31 - 1)
            elif tag == w.COUNTER64:
                value = rng.randint(0, 2**64 - 1)
            elif tag in (w.COUNTER32, w.GAUGE32, w.TIMETICKS):
                value = rng.randint(0, 2**32 - 1)
            elif tag == w.IP_ADDRESS:
                value = bytes(rng.randrange(256) for _ in range(4))
            elif tag == w.OBJECT_IDENTIFIER:
                value = w.encode_oid((1, 3, 6, rng.randint(0, 2**40)))
            elif tag in (w.OCTET_STRING, w.OPAQUE):
                value = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
            else:
                value = None
            vbs.append((oid, tag, value))
        out.append(w.encode_message(w.V2C, b"public", w.RESPONSE, n, w.encode_varbinds(vbs)))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 6])):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[at % len(buf)] = rng.randrange(256)
        elif op == 1:
            buf.insert(at, rng.randrange(256))
        elif op == 2 and buf:
            del buf[at % len(buf)]
        elif op == 3:
            del buf[at:]
        elif op == 4 and buf:  # a length byte in long form
            buf[at % len(buf)] = rng.choice([0x80, 0x81, 0x82, 0x84, 0x85, 0xFF])
        else:
            buf[at:at] = bytes(rng.choice([b"\x84\xff\xff\xff\xff", b"\x1f", b"\x00\x00"]))
    return bytes(buf)


def fuzz(so: Path, count: int, seed: int) -> None:
    sys.path.insert(0, str(REPO))
    from collectors.snmp import wire as w

    spec = importlib.util.spec_from_file_location("collectors.snmp._fastber", so)
    assert spec is not None and spec.loader is not None
    fast: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fast)
    fast.setup(
        w.WireError, w.Message, w._oid_of_bytes, w._cached_oid, w.oid_str, w._py_neutral,
        w.NEUTRAL_NAMES,
    )  # fmt: skip

    def outcome(fn: Any, arg: Any) -> tuple[Any, ...]:
        try:
            return ("ok", fn(arg))
        except Exception as exc:  # noqa: BLE001 - compared, whatever it is
            return ("raise", type(exc), str(exc))

    rng = random.Random(seed)
    base = seeds()
    ok = 0
    for i in range(count):
        data = mutate(rng, rng.choice(base))
        py, c = outcome(w._py_decode_message, data), outcome(fast.decode_message, data)
        if py != c:
            raise SystemExit(f"differ on {data.hex()}: python {py!r}, c {c!r}")
        if py[0] == "ok":
            ok += 1
            vbs = py[1].varbinds
            if outcome(fast.neutral, vbs) != outcome(w._py_neutral, vbs):
                raise SystemExit(f"neutral differs on {data.hex()}")
        if i % 50_000 == 0:
            print(f"{i:,} inputs, {ok:,} decoded", flush=True)
    print(f"{count:,} inputs ({ok:,} decoded, the rest WireErrors): no difference, no ASan report")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--so", help=argparse.SUPPRESS)  # the child: the built module
    args = ap.parse_args()
    if args.so:
        fuzz(Path(args.so), args.count, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        so = Path(tmp) / "_fastber_asan.so"
        build(so)
        libasan = subprocess.run(
            ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
        ).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        cmd = [sys.executable, __file__, "--so", str(so)]
        cmd += ["--count", str(args.count), "--seed", str(args.seed)]
        sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
