"""Twin BMCs for the Redfish tests: fixed model values, devices and options to reach them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from collectors.redfish.options import RedfishOptions
from collectors.redfish.poller import RedfishPoller
from dcim.config import Device, SiteConfig
from dcim.reading import Reading
from dcim.twin.serve_redfish import RedfishTwin


def values_of(n: int) -> dict[str, dict[str, float]]:
    """``n`` servers srv-000... with distinct, fixed power and inlet temperature."""
    return {
        f"srv-{i:03d}": {"power_w": 231.6 + 7.3 * i, "inlet_temp_c": 20.84 + 0.37 * i}
        for i in range(n)
    }


def make_twin(values: Mapping[str, Mapping[str, float]], **kw: Any) -> RedfishTwin:
    """BMCs on ports the system picks when the twin starts (``twin.bmcs[name].port``)."""
    devices = {name: ("127.0.0.1", 0) for name in values}
    return RedfishTwin(lambda name: values[name], devices, **kw)


def site(**defaults: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {"site": {"name": "t"}, "defaults": {"timeout_s": 2.0, **defaults}}
    )


def device(twin: RedfishTwin, name: str, profile: str = "redfish_dmtf", **kw: Any) -> Device:
    """A redfish device of the site file, reaching BMC ``name`` with :func:`options`."""
    bmc = twin.bmcs[name]
    return Device.model_validate(
        {
            "name": name,
            "protocol": "redfish",
            "profile": profile,
            "host": bmc.host,
            "port": bmc.port,
            "redfish": options(twin).model_dump(mode="json", exclude_none=True),
            **{k: v for k, v in kw.items() if v is not None},
        }
    )


def options(twin: RedfishTwin, **kw: Any) -> RedfishOptions:
    doc: dict[str, Any] = {
        "username": twin.username,
        "password": {"value": twin.password},
        "tls_ca": twin.ca_path,
    }
    doc.update(kw)
    return RedfishOptions.model_validate({k: v for k, v in doc.items() if v is not None})


def poller(twin: RedfishTwin, name: str, cfg: SiteConfig | None = None, **kw: Any) -> RedfishPoller:
    return RedfishPoller(cfg or site(), device(twin, name), opts=options(twin, **kw))


def as_truth(readings: list[Reading]) -> dict[tuple[str, str], dict[str, Any]]:
    """Readings keyed as :meth:`dcim.twin.bmc.BmcState.truth` is."""
    out = {}
    for r in readings:
        row = r.tags.get("sensor") or r.tags.get("fan") or r.tags.get("psu") or ""
        out[(r.measurement, row)] = dict(r.fields)
    return out


@contextmanager
def twin_thread(twin: RedfishTwin) -> Iterator[asyncio.AbstractEventLoop]:
    """The twin on its own loop in a thread (so its work is not the collector loop's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(twin.start(), loop).result(30)
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(twin.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
