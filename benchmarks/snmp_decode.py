"""The SNMP decoder alone: µs of CPU per var-bind, wire.py's Python against the compiled
``collectors.snmp._fastber``, on the GETBULK answers of a real AP8641 (issue #15).

The answers are real datagrams: snmpsim (PyPI ``snmpsim``) serving ``snmpsim-data``'s
``UPS/apc-8641`` walk is walked over its rPDU2 subtree (``1.3.6.1.4.1.318.1.1.26``) with
GETBULK (max-repetitions 25, as the collector asks) and every answer is kept as received.
Then, in this process, each decoder runs the collector's path on them, ``neutral(
decode_message(data).varbinds)``, in rounds (the OID cache warm, as from the second poll on),
and so do its two halves; process CPU time (``time.process_time``) over the rounds.

``codec.Walk.feed`` too: a walk of the subtree fed the answers' var-binds (its loop in
Python, ``Walk._feed_py``, against ``_fastber.walk_feed``).

``--rss N``: the compiled path on N answers, with a damaged one after each (its WireError),
and the process's RSS before and after: flat if nothing leaks.

    .venv/bin/python benchmarks/snmp_decode.py [--rounds 300] [--rss 1000000]

Figures (2 shared cores, load average 1.4, Python 3.11.7, gcc 12 -O2; 59 answers, 1,475
var-binds, ``--rounds 300 --rss 1000000``), µs of CPU per var-bind:

    µs CPU per var-bind            python        c   ratio
    decode_message + neutral        1.055    0.148    7.1x
    decode_message                  0.917    0.066   13.8x
    neutral                         0.129    0.067    1.9x
    RSS over 1,000,000 answers (+ as many WireErrors): 40872 KiB before, 40872 KiB after

The C's ``neutral`` is mostly the two tuples a var-bind becomes (the Python makes the same).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import work_dir  # noqa: E402
from peers import apc_walk, snmpsim  # noqa: E402

from collectors.snmp import codec  # noqa: E402
from collectors.snmp import wire as w  # noqa: E402

RPDU2 = (1, 3, 6, 1, 4, 1, 318, 1, 1, 26)


def recorded_answers() -> list[bytes]:
    work = work_dir("dcim-snmp-decode-")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    out: list[bytes] = []
    try:
        with snmpsim(work, ["apc-8641"], apc_walk()) as (_, port):
            oid: tuple[int, ...] = RPDU2
            while True:
                req = w.encode_message(
                    w.V2C, b"apc-8641", w.GET_BULK, len(out) + 1, w.request_varbinds([oid]),
                    error_index=25,
                )  # fmt: skip
                sock.sendto(req, ("127.0.0.1", port))
                data = sock.recvfrom(w.MAX_MESSAGE)[0]
                vbs = w._py_decode_message(data).varbinds
                inside = [vb for vb in vbs if w.oid_tuple(vb[0])[: len(RPDU2)] == RPDU2]
                if inside:
                    out.append(data)
                if len(inside) < len(vbs) or not vbs:
                    return out
                oid = w.oid_tuple(vbs[-1][0])
    finally:
        sock.close()
        shutil.rmtree(work, ignore_errors=True)


def cpu_per_varbind(fn: Callable[[], Any], rounds: int, varbinds: int) -> float:
    fn()  # warm: the OID cache, as from the second poll on
    t0 = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - t0) / (rounds * varbinds) * 1e6


def compare(answers: list[bytes], rounds: int) -> None:
    from collectors.snmp import _fastber

    n = sum(len(w._py_decode_message(a).varbinds) for a in answers)
    decoded = [w._py_decode_message(a).varbinds for a in answers]
    converted = [w._py_neutral(vbs) for vbs in decoded]
    sides = {
        "python": (w._py_decode_message, w._py_neutral),
        "c": (_fastber.decode_message, _fastber.neutral),
    }
    rows: dict[str, list[float]] = {}
    for name, (decode, neutral) in sides.items():
        assert [neutral(decode(a).varbinds) for a in answers] == [
            w._py_neutral(w._py_decode_message(a).varbinds) for a in answers
        ]

        def both(decode: Any = decode, neutral: Any = neutral) -> None:
            for a in answers:
                neutral(decode(a).varbinds)

        def dec(decode: Any = decode) -> None:
            for a in answers:
                decode(a)

        def neu(neutral: Any = neutral) -> None:
            for vbs in decoded:
                neutral(vbs)

        def feed(compiled: bool = name == "c") -> None:
            saved = codec._walk_feed
            codec._walk_feed = _fastber.walk_feed if compiled else None
            try:
                walk = codec.Walk([RPDU2], max_varbinds=60, uptime=False)
                for vbs in converted:
                    walk.feed([RPDU2], vbs, 1)
            finally:
                codec._walk_feed = saved

        rows[name] = [cpu_per_varbind(f, rounds, n) for f in (both, dec, neu, feed)]
    print(f"{len(answers)} GETBULK answers of an AP8641 (snmpsim), {n} var-binds, {rounds} rounds")
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'µs CPU per var-bind':28} {'python':>8} {'c':>8} {'ratio':>7}")
    labels = ("decode_message + neutral", "decode_message", "neutral", "Walk.feed")
    for i, label in enumerate(labels):
        py, c = rows["python"][i], rows["c"][i]
        print(f"{label:28} {py:8.3f} {c:8.3f} {py / c:6.1f}x")


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def rss(answers: list[bytes], count: int) -> None:
    from collectors.snmp import _fastber

    decode, neutral = _fastber.decode_message, _fastber.neutral
    damaged = [a[:-2] for a in answers]
    for a in answers * 10:
        neutral(decode(a).varbinds)
    before = rss_kib()
    for i in range(count):
        a = answers[i % len(answers)]
        neutral(decode(a).varbinds)
        with contextlib.suppress(w.WireError):
            decode(damaged[i % len(answers)])
        if i == count // 2:
            middle = rss_kib()
    after = rss_kib()
    print(f"RSS over {count:,} answers (+ as many WireErrors): {before} KiB before, {middle} KiB")
    print(f"half-way, {after} KiB after: {after - before:+d} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--rss", type=int, default=0, help="answers decoded for the RSS check")
    args = ap.parse_args()
    answers = recorded_answers()
    compare(answers, args.rounds)
    if args.rss:
        rss(answers, args.rss)


if __name__ == "__main__":
    main()
