"""``dcim probe CONFIG DEVICE``: for commissioning, read one device once through its profile and
print what the collector would store (line protocol), or why it could not. Reads only.

A polled protocol is polled once; for a push protocol (MQTT) the probe starts the protocol's
source for the device alone and waits for the first data reading it hands over."""

from __future__ import annotations

import asyncio
import queue
import sys

from dcim.config import Device, SiteConfig
from dcim.protocols import PollError, make_poller, plugin
from dcim.reading import Reading
from dcim.storage.lineprotocol import encode


def _print(readings: list[Reading]) -> int:
    data = [r for r in readings if r.measurement != "dcim_poll"]
    for r in data:
        print(encode(r))
    n = sum(len(r.fields) for r in data)
    print(f"# {n} value(s) read", file=sys.stderr)
    return 0 if n else 1


async def _poll(cfg: SiteConfig, dev: Device) -> list[Reading]:
    poller = make_poller(cfg, dev)
    try:
        budget = cfg.timeout_of(dev) * (cfg.retries_of(dev) + 1) + 1.0
        return await asyncio.wait_for(poller.poll(), budget)
    finally:
        await poller.close()


def _wait_pushed(cfg: SiteConfig, dev: Device, timeout_s: float) -> list[Reading]:
    """The first readings with data the device's push source hands over (raises queue.Empty
    when none came within ``timeout_s``)."""
    factory = plugin(dev.protocol).make_source
    assert factory is not None  # a protocol that is not polled is pushed
    got: queue.Queue[list[Reading]] = queue.Queue()
    source = factory(cfg, [dev], got.put)
    source.start()
    try:
        while True:  # health rows (gaps) come too: wait for data
            readings = got.get(timeout=timeout_s)
            if any(r.measurement != "dcim_poll" for r in readings):
                return readings
    finally:
        source.stop()


def probe(cfg: SiteConfig, dev: Device, *, timeout_s: float | None = None) -> int:
    """0: values read and printed; 1: the device answered nothing usable or not at all."""
    try:
        if plugin(dev.protocol).polled:
            return _print(asyncio.run(_poll(cfg, dev)))
        wait = timeout_s if timeout_s is not None else 3 * cfg.interval_of(dev)
        print(
            f"# waiting up to {wait:g} s for {dev.name} to send ({dev.protocol})", file=sys.stderr
        )
        return _print(_wait_pushed(cfg, dev, wait))
    except PollError as exc:
        print(f"{dev.name}: {exc.kind}: {exc}", file=sys.stderr)
    except TimeoutError:
        print(f"{dev.name}: no answer in time", file=sys.stderr)
    except queue.Empty:
        print(f"{dev.name}: nothing received in time", file=sys.stderr)
    return 1
