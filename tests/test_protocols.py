"""The protocol registry (dcim.protocols): every built-in protocol is a complete plugin (its
package with collector, options, profile model, sample config, README and tests), and a
protocol the registry does not know is a clear error."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest
import yaml

from dcim import protocols
from dcim.config import Device
from dcim.profiles import Profile, load_profiles

REPO = Path(__file__).resolve().parents[1]
BUILTIN = ["modbus", "mqtt", "snmp"]
# Every protocol this distribution registers (pyproject's entry points): each must be complete.
OURS = sorted(
    ep.name
    for ep in importlib.metadata.entry_points(group=protocols.ENTRY_POINT_GROUP)
    if ep.value.startswith("collectors.")
)


def test_the_built_in_protocols_are_registered_by_entry_point() -> None:
    assert set(BUILTIN) <= set(OURS) <= set(protocols.names())


@pytest.mark.parametrize("name", OURS)
def test_protocol_is_a_complete_plugin(name: str) -> None:
    plugin = protocols.plugin(name)
    package = REPO / "collectors" / name
    assert plugin is importlib.import_module(f"collectors.{name}").plugin
    assert plugin.name == name and issubclass(plugin.profile, Profile)
    assert plugin.sample_config == package / "sample.yaml" and plugin.sample_config.is_file()
    for part in ("options.py", "profile.py", "README.md"):
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


LAZY = """
import pathlib
pathlib.Path(__file__).with_name("imported").touch()
from collectors.snmp import plugin as snmp
from dataclasses import replace
plugin = replace(snmp, name="lazyproto")
misnamed = snmp
not_a_plugin = object()
"""


def test_plugins_are_listed_without_import_and_loaded_on_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "lazyproto-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lazyproto\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[dcim.protocols]\nlazyproto = lazyproto:plugin\n"
        "misnamed = lazyproto:misnamed\nodd = lazyproto:not_a_plugin\n"
    )
    (tmp_path / "lazyproto.py").write_text(LAZY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazyproto", raising=False)
    protocols.reload()
    try:
        assert {"lazyproto", "misnamed", "odd"} <= set(protocols.names())
        assert not (tmp_path / "imported").exists()  # listed, not imported
        assert protocols.plugin("lazyproto").name == "lazyproto"
        assert (tmp_path / "imported").exists()
        with pytest.raises(protocols.PluginError, match="calls itself 'snmp'"):
            protocols.plugin("misnamed")
        with pytest.raises(protocols.PluginError, match="is a object, not a dcim.protocols"):
            protocols.plugin("odd")
    finally:
        monkeypatch.undo()
        protocols.reload()
    assert "lazyproto" not in protocols.names()


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


# -- layering: the core knows no protocol, and no module imports itself back ------------------

CORE_EXEMPT = ("dcim/twin/", "dcim/demo.py", "dcim/cli.py")  # the application layer


def _modules() -> dict[str, Path]:
    """Every module by its .py file or, compiled (a C extension), by its .pyi stub."""
    out: dict[str, Path] = {}
    for root in ("dcim", "collectors"):
        for path in sorted((REPO / root).rglob("*.py")) + sorted((REPO / root).rglob("*.pyi")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out.setdefault(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path)
    return out


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``path`` imports at run time (function-level imports
    included, ``if TYPE_CHECKING:`` blocks left out; a compiled module's stub: none)."""
    if path.suffix == ".pyi":
        return set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                pkg = name.split(".")[: None if path.name == "__init__.py" else -1]
                base = ".".join([*pkg[: len(pkg) - node.level + 1], node.module])
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def test_the_core_imports_no_protocol() -> None:
    for name, path in _modules().items():
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("dcim/") and not rel.startswith(CORE_EXEMPT):
            found = {m for m in _imports(path, name, _modules()) if m.startswith("collectors")}
            assert not found, f"{rel} imports {sorted(found)}: ask dcim.protocols instead"


def test_no_import_cycle_through_the_protocols_or_the_core_they_use() -> None:
    known = _modules()
    graph = {name: _imports(path, name, known) for name, path in known.items()}
    watched = [
        m
        for m in graph
        if m.startswith("collectors")
        or m in {"dcim.protocols", "dcim.config", "dcim.profiles", "dcim.reading"}
        or m in {"dcim.scheduler", "dcim.runtime", "dcim.probe", "dcim.pipeline"}
    ]
    for start in watched:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} imports itself back (through {sorted(seen)})"
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])


def test_a_poller_names_a_missing_or_foreign_profile() -> None:
    from collectors.modbus.profile import ModbusProfile
    from collectors.snmp.profile import SnmpProfile
    from dcim.config import SiteConfig

    cfg = SiteConfig.model_validate(
        {
            "site": {"name": "s"},
            "devices": [
                {"name": "m", "protocol": "modbus", "profile": "crah", "host": "h", "port": 502},
                {"name": "x", "protocol": "modbus", "profile": "nope", "host": "h", "port": 503},
            ],
        }
    )
    m, x = cfg.devices
    assert protocols.device_profile(cfg, m, ModbusProfile, "a Modbus profile").name == "crah"
    with pytest.raises(protocols.PollError, match="profile 'crah' is not an SNMP profile") as e:
        protocols.device_profile(cfg, m, SnmpProfile, "an SNMP profile")
    assert e.value.kind == "config"
    with pytest.raises(protocols.PollError, match="device 'x': unknown profile 'nope'"):
        protocols.device_profile(cfg, x, ModbusProfile, "a Modbus profile")
