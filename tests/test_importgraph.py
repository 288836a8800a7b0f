"""The import graph in docs/architecture.md is the code's: regenerated here, it must match;
and the code keeps its shape: no import cycle, no layer importing a higher one."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("importgraph", ROOT / "tools" / "importgraph.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["importgraph"] = mod  # dataclasses look their module up while building
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ig() -> ModuleType:
    return load_tool()


def test_doc_is_generated_from_the_code(ig: ModuleType) -> None:
    text = ig.DOC.read_text()
    assert text == ig.render_doc(ig.build(), text), "run: python tools/importgraph.py"


def test_no_cycle(ig: ModuleType) -> None:
    assert ig.cycles(ig.build()) == []


def test_no_layer_imports_a_higher_one(ig: ModuleType) -> None:
    assert ig.problems(ig.build()) == []


def test_every_module_has_a_layer(ig: ModuleType) -> None:
    g = ig.build()
    assert "collectors.snmp" in g.modules and "dcim.cli" in g.modules
    for mod in g.modules:
        assert ig.layer_of(mod) in ig.LAYERS, mod


# -- the reader itself, on small sources ------------------------------------------------------


def edges_of(ig: ModuleType, source: str, module: str, modules: set[str]) -> set[tuple[str, str]]:
    tree = ast.parse(source)
    known = {m: Path(m) for m in modules}
    return {
        (dst, kind)
        for node, kind in ig._imports(tree)
        for dst in ig._targets(node, module, False, known)
    }


def test_import_kinds(ig: ModuleType) -> None:
    src = """
from typing import TYPE_CHECKING
import dcim.config
from dcim import reading
from dcim.storage.influx import InfluxStore
if TYPE_CHECKING:
    from dcim.runtime import Collector
def f():
    from collectors import mqtt
    import os
"""
    mods = {
        "dcim",
        "dcim.config",
        "dcim.reading",
        "dcim.storage",
        "dcim.storage.influx",
        "dcim.runtime",
        "collectors",
        "collectors.mqtt",
        "dcim.x",
    }
    assert edges_of(ig, src, "dcim.x", mods) == {
        ("dcim.config", "runtime"),
        ("dcim.reading", "runtime"),
        ("dcim.storage.influx", "runtime"),
        ("dcim.runtime", "typing"),
        ("collectors.mqtt", "lazy"),
    }


def test_relative_import_and_unknown_submodule(ig: ModuleType) -> None:
    mods = {"dcim", "dcim.twin", "dcim.twin.physics", "dcim.twin.model"}
    src = "from . import physics\nfrom .physics import Arr\nfrom dcim.twin import nothing_here"
    assert edges_of(ig, src, "dcim.twin.model", mods) == {
        ("dcim.twin.physics", "runtime"),
        ("dcim.twin", "runtime"),
    }


def test_a_cycle_and_a_layer_violation_are_found(ig: ModuleType) -> None:
    g = ig.Graph(
        {m: Path(m) for m in ("dcim.spool", "dcim.pipeline", "dcim.reading", "collectors.x")}
    )
    g.edges = [
        ig.Edge("dcim.spool", "dcim.pipeline", "runtime", "a:1"),
        ig.Edge("dcim.pipeline", "dcim.spool", "lazy", "b:2"),
        ig.Edge("dcim.reading", "dcim.spool", "typing", "c:3"),
        ig.Edge("dcim.spool", "collectors.x", "typing", "d:4"),
    ]
    assert ig.cycles(g) == [["dcim.pipeline", "dcim.spool"]]
    found = ig.violations(g)
    assert set(found) == {("dcim.reading", "dcim.spool"), ("dcim.spool", "collectors.x")}
    # a cycle through a TYPE_CHECKING import only does not count
    g.edges[1] = ig.Edge("dcim.pipeline", "dcim.spool", "typing", "b:2")
    assert ig.cycles(g) == []
