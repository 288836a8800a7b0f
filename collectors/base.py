"""What every polling collector looks like to the scheduler."""

from __future__ import annotations

from typing import Protocol

from dcim.config import Device, SiteConfig
from dcim.protocols import ErrorKind, PollError
from dcim.reading import Reading

__all__ = ["ErrorKind", "PollError", "Poller", "PollerFactory"]


class Poller(Protocol):
    """Reads one device. ``poll`` returns the readings of one cycle (usually one Reading with
    the profile's measurement, tags from ``SiteConfig.tags_of``, the poll's timestamp) or raises
    PollError. Values that fail alone (noSuchObject, one bad register) are left out of the
    fields; the poll still succeeds if any value was read."""

    device: Device

    async def poll(self) -> list[Reading]: ...

    async def close(self) -> None: ...


class PollerFactory(Protocol):
    def __call__(self, cfg: SiteConfig, device: Device) -> Poller: ...
