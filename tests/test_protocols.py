"""The protocol registry (dcim.protocols): every built-in protocol is a complete plugin (its
package with collector, options, profile model, sample config, README and tests), and a
protocol the registry does not know is a clear error."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from dcim import protocols
from dcim.config import Device
from dcim.profiles import Profile, load_profiles

REPO = Path(__file__).resolve().parents[1]
BUILTIN = ["modbus", "mqtt", "snmp"]


def test_the_built_in_protocols_are_registered_by_entry_point() -> None:
    assert set(BUILTIN) <= set(protocols.names())


@pytest.mark.parametrize("name", BUILTIN)
def test_protocol_is_a_complete_plugin(name: str) -> None:
    plugin = protocols.plugin(name)
    package = REPO / "collectors" / name
    assert plugin is importlib.import_module(f"collectors.{name}").plugin
    assert plugin.name == name and issubclass(plugin.profile, Profile)
    assert plugin.sample_config == package / "sample.yaml" and plugin.sample_config.is_file()
    for part in ("options.py", "profile.py", "codec.py", "README.md"):
        assert (package / part).is_file(), part
    assert (REPO / "tests" / "collectors" / name).is_dir()
    assert plugin.polled == (plugin.make_poller is not None) != (plugin.make_source is not None)
    # The sample config is a valid device of the protocol, with the protocol's own options.
    dev = Device.model_validate(yaml.safe_load(plugin.sample_config.read_text()))
    assert dev.protocol == name
    assert plugin.options is not None and isinstance(dev.options, plugin.options)
    assert load_profiles()[dev.profile].protocol == name
    # The README shows the sample config as it is (the sample is the documentation).
    assert plugin.sample_config.read_text().strip() in (package / "README.md").read_text()


def test_every_built_in_profile_is_validated_by_its_protocols_model() -> None:
    for prof in load_profiles().values():
        assert type(prof) is protocols.plugin(prof.protocol).profile


def test_an_unknown_protocol_names_the_registered_ones() -> None:
    with pytest.raises(protocols.UnknownProtocol) as err:
        protocols.plugin("bacnet")
    assert "unknown protocol 'bacnet'" in str(err.value)
    assert all(name in str(err.value) for name in BUILTIN)


def test_a_plugin_is_polled_or_pushed_not_both() -> None:
    snmp = protocols.plugin("snmp")
    with pytest.raises(ValueError, match="exactly one of make_poller"):
        protocols.ProtocolPlugin(name="x", profile=Profile)
    with pytest.raises(ValueError, match="exactly one of make_poller"):
        protocols.ProtocolPlugin(
            name="x",
            profile=Profile,
            make_poller=snmp.make_poller,
            make_source=protocols.plugin("mqtt").make_source,
        )
