"""The plain stand-ins of dcim.plainmodel (pure logic): a model written against them keeps
its defaults, its values restored from pydantic's pickled state, and compares, hashes,
copies and dumps as the pydantic model does. ``dcim run``'s process uses them
(tests/test_runconfig.py runs that end to end)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pydantic
import pytest

from dcim import plainmodel as pm


class PlainInner(pm.BaseModel):
    model_config = pm.ConfigDict(frozen=True)
    name: str
    scale: float = pm.Field(default=1.0, gt=0)


class PlainOuter(pm.BaseModel):
    KIND: ClassVar[str] = "outer"
    inner: PlainInner
    items: list[int] = []
    tags: dict[str, str] = pm.Field(default_factory=dict)
    at: datetime | None = None
    path: Path = Path("var")
    _secret: str | None = pm.PrivateAttr(default=None)

    @pm.model_validator(mode="after")
    def _never_called(self) -> PlainOuter:
        raise AssertionError("a plain model validates nothing")

    def doubled(self) -> list[int]:
        return [2 * i for i in self.items]


class Inner(pydantic.BaseModel):  # the same models with pydantic, for the pickled state
    model_config = pydantic.ConfigDict(frozen=True)
    name: str
    scale: float = pydantic.Field(default=1.0, gt=0)


class Outer(pydantic.BaseModel):
    inner: Inner
    items: list[int] = []
    tags: dict[str, str] = pydantic.Field(default_factory=dict)
    at: datetime | None = None
    path: Path = Path("var")
    _secret: str | None = pydantic.PrivateAttr(default=None)


def test_defaults_each_instance_its_own_mutable_ones() -> None:
    a, b = PlainOuter(inner=PlainInner(name="x")), PlainOuter(inner=PlainInner(name="y"))
    a.items.append(1)
    a.tags["k"] = "v"
    assert b.items == [] and b.tags == {} and b.path == Path("var") and b._secret is None
    assert a.inner.scale == 1.0 and a.doubled() == [2] and PlainOuter.KIND == "outer"
    with pytest.raises(TypeError, match="'inner' is required"):
        PlainOuter()
    with pytest.raises(TypeError, match="unknown field"):
        PlainOuter(inner=PlainInner(name="x"), nope=1)


def test_restored_from_pydantics_pickled_state() -> None:
    src = Outer(inner=Inner(name="x", scale=2.0), items=[3], at=datetime(2026, 1, 2, tzinfo=UTC))
    src._secret = "s"
    state = pickle.loads(pickle.dumps(src)).__getstate__()  # what pickle hands __setstate__
    out = PlainOuter.__new__(PlainOuter)
    inner = PlainInner.__new__(PlainInner)
    inner.__setstate__(state["__dict__"]["inner"].__getstate__())
    out.__setstate__({**state, "__dict__": {**state["__dict__"], "inner": inner}})
    assert out.items == [3] and out._secret == "s" and out.inner.scale == 2.0
    assert out.model_dump(mode="json") == src.model_dump(mode="json")
    assert out.model_dump() == {**src.model_dump(), "inner": {"name": "x", "scale": 2.0}}


def test_equality_hash_copy_and_repr_as_pydantics() -> None:
    a, b = PlainInner(name="x"), PlainInner(name="x")
    assert a == b and hash(a) == hash(b) and a != PlainInner(name="y")
    assert len({a, b}) == 1  # frozen: hashable, by value
    outer = PlainOuter(inner=a, items=[1])
    with pytest.raises(TypeError):
        hash(outer)  # not frozen: unhashable, as pydantic's
    copied = outer.model_copy(update={"items": [5]})
    assert copied.items == [5] and outer.items == [1] and copied.inner is a
    assert repr(a) == repr(Inner(name="x")).replace("Inner", "PlainInner")
    assert PlainInner(name="x", scale=0.1).model_dump(exclude_none=True) == {
        "name": "x",
        "scale": 0.1,
    }


def test_activate_only_before_the_model_modules() -> None:
    # this process imported them (pydantic's kind): asking for plain ones now is refused
    import dcim.modelbase

    assert not dcim.modelbase.PLAIN
    with pytest.raises(RuntimeError, match="after"):
        pm.activate()
    assert not pm.ACTIVE
