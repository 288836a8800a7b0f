"""Every protocol a device can name has its module, its sample config, its tests, and (if it is
polled) its registry line: adding a protocol without one of them fails here."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import pytest

from collectors import REGISTRY
from dcim.config import Device

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = typing.get_args(Device.model_fields["protocol"].annotation)
PUSHED = {"mqtt"}  # protocols whose devices send to us instead of being polled


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_is_complete(protocol: str) -> None:
    module = importlib.import_module(f"collectors.{protocol}")
    assert (REPO / "collectors" / f"{protocol}.sample.yaml").is_file()
    assert (REPO / "tests" / "collectors" / f"test_{protocol}.py").is_file()
    if protocol in PUSHED:
        assert protocol not in REGISTRY
    else:
        assert protocol in REGISTRY and callable(module.make_poller)


def test_registry_names_only_known_protocols() -> None:
    assert set(REGISTRY) <= set(PROTOCOLS) - PUSHED
