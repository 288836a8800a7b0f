"""The Redfish plugin as the core sees it: its plugin object, sample config and README."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import collectors.redfish as redfish
from collectors.redfish.options import RedfishOptions
from collectors.redfish.profile import RedfishProfile
from dcim.profiles import load_profiles

PLUGIN_DIR = Path(redfish.__file__).resolve().parent


def test_plugin_is_registered_under_its_entry_point() -> None:
    (ep,) = entry_points(group="dcim.protocols", name="redfish")
    plugin = ep.load()
    assert plugin is redfish.plugin
    assert plugin.name == "redfish" and plugin.profile is RedfishProfile
    assert plugin.options is RedfishOptions and plugin.options_required
    assert plugin.needs_endpoint and plugin.make_poller is not None
    assert plugin.sample_config == PLUGIN_DIR / "sample.yaml"


def test_sample_config_is_valid_and_the_readme_shows_it() -> None:
    sample = (PLUGIN_DIR / "sample.yaml").read_text()
    doc = yaml.safe_load(sample)
    assert doc["protocol"] == "redfish" and doc["profile"] in load_profiles()
    opts = RedfishOptions.model_validate(doc["redfish"])
    assert opts.auth == "session" and opts.tls_fingerprint_sha256 is not None
    assert sample in (PLUGIN_DIR / "README.md").read_text()


def test_options_refuse_https_without_a_trust_anchor() -> None:
    base = {"username": "u", "password": {"env": "X"}}
    with pytest.raises(ValidationError, match="never turned off"):
        RedfishOptions.model_validate(base)
    with pytest.raises(ValidationError, match="64 hex digits"):
        RedfishOptions.model_validate({**base, "tls_fingerprint_sha256": "abcd"})
    with pytest.raises(ValidationError, match="not both"):
        RedfishOptions.model_validate(
            {**base, "tls_ca": "/x.pem", "tls_fingerprint_sha256": "a" * 64}
        )
    assert RedfishOptions.model_validate({**base, "scheme": "http"}).scheme == "http"
