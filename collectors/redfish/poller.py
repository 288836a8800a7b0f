"""Redfish poller: one BMC, its chassis's power, temperatures, fans and power supplies.

The first poll discovers the URLs of the profile's resources (see
:mod:`collectors.redfish.codec`) and keeps them; a 404 on one of them forgets them and the
next poll discovers again. A poll GETs the resources its plan needs, all at once (at most
``max_connections`` at a time on kept-alive connections); a collection is read in one
request with ``$expand`` where the service root says the BMC supports it, else member by
member. A resource that fails alone (404 aside) is left out; the poll fails only if nothing
was read, with the first error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from collectors.redfish.client import NotFound, RedfishClient
from collectors.redfish.codec import (
    ABSENT_STATES,
    Plan,
    chassis_links,
    is_collection,
    members,
    odata_id,
    pick_chassis,
    subsystem_links,
)
from collectors.redfish.options import RedfishOptions
from collectors.redfish.profile import RedfishProfile
from dcim.config import Device, SiteConfig
from dcim.protocols import PollError, device_profile
from dcim.reading import Reading

log = logging.getLogger(__name__)

ROOT = "/redfish/v1/"
EXPAND = "$expand=.($levels=1)"


def options_of(device: Device) -> RedfishOptions:
    """The device's ``redfish:`` section."""
    try:
        return device.options_as(RedfishOptions)
    except TypeError:
        raise PollError("config", f"device {device.name!r} has no 'redfish:' section") from None


class RedfishPoller:
    """Reads one BMC through one profile (:class:`RedfishProfile`)."""

    def __init__(
        self,
        cfg: SiteConfig,
        device: Device,
        profile: RedfishProfile | None = None,
        opts: RedfishOptions | None = None,
    ) -> None:
        if device.host is None or device.port is None:
            raise PollError("config", f"device {device.name!r} has no host/port")
        if profile is None:
            profile = device_profile(cfg, device, RedfishProfile, "a Redfish profile")
        self.device = device
        self.opts = opts or options_of(device)
        self.profile = profile
        self._plan = Plan.of(profile)
        self._tags = cfg.tags_of(device)
        self.client = RedfishClient(
            host=device.host,
            port=device.port,
            opts=self.opts,
            password=self.opts.password.resolve(),
            timeout_s=cfg.timeout_of(device),
        )
        self._urls: dict[str, str] | None = None
        self._discovery: asyncio.Future[dict[str, str]] | None = None
        self._expand = False
        self._failing: set[str] = set()
        self.discoveries = 0

    # -- discovery ----------------------------------------------------------------------------
    async def _discover(self) -> dict[str, str]:
        get = self.client.get
        root = await get(ROOT)
        feats = root.get("ProtocolFeaturesSupported", {}) if isinstance(root, dict) else {}
        expand = feats.get("ExpandQuery", {}) if isinstance(feats, dict) else {}
        self._expand = isinstance(expand, dict) and bool(
            expand.get("NoLinks") and expand.get("Levels")
        )
        coll_url = odata_id(root.get("Chassis")) if isinstance(root, dict) else None
        if coll_url is None:
            raise PollError("protocol", f"{ROOT}: the service root has no Chassis link")
        urls = members(await get(coll_url))
        if self.opts.chassis_id is not None:
            by_id = [u for u in urls if u.rstrip("/").rsplit("/", 1)[-1] == self.opts.chassis_id]
            urls = by_id or urls
        bodies = dict(zip(urls, await asyncio.gather(*(get(u) for u in urls)), strict=True))
        chassis = pick_chassis(bodies, self.opts.chassis_id)
        if chassis is None:
            raise PollError(
                "protocol",
                f"{coll_url}: no chassis"
                + (f" with Id {self.opts.chassis_id!r}" if self.opts.chassis_id else ""),
            )
        links = chassis_links(chassis, bodies[chassis])
        wanted = self.profile.resources()
        for sub in ("power_subsystem", "thermal_subsystem"):
            if sub in links and (wanted & {"power_supplies", "fans", "thermal_metrics"}):
                links.update(subsystem_links(sub, await get(links[sub])))
        self.discoveries += 1
        return links

    async def _discovered(self) -> dict[str, str]:
        """The URLs, discovered in a task of its own that outlives a poll cancelled at its
        deadline: on a BMC slow enough that discovery takes longer than one poll may, the
        next poll waits for the same discovery instead of starting over (and never ending)."""
        task = self._discovery
        if task is None:
            task = self._discovery = asyncio.ensure_future(self._discover())
        try:
            urls = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # the discovery itself was cancelled (closing): start over
                self._discovery = None
            raise
        except BaseException:
            self._discovery = None  # failed: the next poll tries again
            raise
        self._discovery = None
        self._urls = urls
        return urls

    # -- one poll -----------------------------------------------------------------------------
    async def poll(self) -> list[Reading]:
        t_ns = time.time_ns()
        urls = self._urls if self._urls is not None else await self._discovered()
        docs: dict[str, Any] = {}
        errors: list[PollError] = []

        async def fetch(resources: set[str]) -> None:
            names = sorted(resources)
            got = await asyncio.gather(
                *(self._fetch(r, urls[r]) for r in names), return_exceptions=True
            )
            for name, res in zip(names, got, strict=True):
                if isinstance(res, NotFound):
                    self._urls = None  # stale: rediscover next poll
                    errors.append(res)
                elif isinstance(res, PollError):
                    errors.append(res)
                elif isinstance(res, BaseException):
                    raise res
                else:
                    docs[name] = res

        readings = await self._plan.read(urls, fetch, self._tags, t_ns).run(docs)
        self._note_partial(errors if readings else [])
        if not readings and errors:
            raise errors[0]
        if not readings:
            raise PollError("decode", f"{self.device.name}: no value found in {sorted(docs)}")
        return readings

    def _note_partial(self, errors: list[PollError]) -> None:
        """A resource failing while the poll still reads others is logged when it starts
        failing and when it is back, not every cycle (the poll itself counts as up)."""
        failing = {str(e) for e in errors}
        for text in sorted(failing - self._failing):
            log.warning("%s: read without one resource: %s", self.device.name, text)
        if self._failing and not failing:
            log.info("%s: every resource read again", self.device.name)
        self._failing = failing

    async def _fetch(self, resource: str, url: str) -> Any:
        get = self.client.get
        if not is_collection(resource):
            return await get(url)
        follow = self._plan.follows.get(resource, frozenset())
        if self._expand:
            body = await get(f"{url}?{EXPAND}")
            rows = [m for m in body.get("Members", []) if isinstance(m, dict)]
            if all("@odata.id" not in m or len(m) > 1 for m in rows):
                return await self._follow(rows, follow)
        rows = list(await asyncio.gather(*(get(u) for u in members(await get(url)))))
        return await self._follow(rows, follow)

    async def _follow(self, rows: list[Any], follow: frozenset[str]) -> list[Any]:
        """Each row with its ``follow`` links replaced by the bodies they point to."""
        if not follow:
            return rows
        jobs = []
        for row in rows:
            if _key_state(row) in ABSENT_STATES:
                continue  # an empty bay has nothing to follow
            for key in follow:
                url = odata_id(row.get(key)) if isinstance(row, dict) else None
                if url is not None:
                    jobs.append((row, key, url))
        bodies = await asyncio.gather(
            *(self.client.get(u) for _, _, u in jobs), return_exceptions=True
        )
        out = {id(r): dict(r) for r in rows if isinstance(r, dict)}
        for (row, key, _), body in zip(jobs, bodies, strict=True):
            if isinstance(body, dict):
                out[id(row)][key] = body
            elif isinstance(body, BaseException) and not isinstance(body, PollError):
                raise body
        return [out.get(id(r), r) for r in rows]

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(BaseException):
                await self._discovery
            self._discovery = None
        await self.client.close()


def _key_state(row: Any) -> Any:
    status = row.get("Status") if isinstance(row, dict) else None
    return status.get("State") if isinstance(status, dict) else None


def make_poller(cfg: SiteConfig, device: Device) -> RedfishPoller:
    return RedfishPoller(cfg, device)
