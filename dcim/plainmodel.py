"""Plain stand-ins for the pydantic names the site file's models are written with, for the
collector's long-running process only (issue #15: pydantic and the internals its models load
hold some 14 MB of the collector's RSS for its whole life).

``dcim run`` validates the site file with pydantic in a short-lived child process
(:mod:`dcim.runconfig`: every check and error message as ``dcim check-config`` gives them),
which hands the validated models over pickled. The collector process calls
:func:`activate` before any model module is imported: :mod:`dcim.modelbase` then gives those
modules the classes below instead of pydantic's, so that the same model classes, with the
same names, fields and methods, are defined as plain Python classes and the pickled models
are restored into them (their ``__setstate__`` takes pydantic's pickled state) without
validating anything again.

Written by hand (not a library) because what it has to do is small and specific: hold the
values pydantic validated, give the defaults of a model made at run time
(``ReadingShape(measurement=..., fields=...)``, ``AlertsSettings()``), copy, compare and
dump them. It validates nothing: a plain model is only ever made from values pydantic
validated or from the program's own. Any other pydantic API is missing on purpose, so that
code needing it fails loudly rather than running unchecked.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import PurePath
from typing import Any, ClassVar

ACTIVE = False  # set by activate(): dcim.modelbase reads it when first imported
MISSING: Any = object()
MODEL_MODULES = ("dcim.modelbase", "pydantic")


def activate() -> None:
    """From now on the model modules are plain (see the module doc). Only before any of them
    is imported: RuntimeError otherwise (a process cannot have both kinds of the same class)."""
    global ACTIVE
    loaded = [m for m in MODEL_MODULES if m in sys.modules]
    if loaded and not ACTIVE:
        raise RuntimeError(f"plain models asked for after {', '.join(loaded)} was imported")
    ACTIVE = True


class _FieldDefault:
    __slots__ = ("default", "factory")

    def __init__(self, default: Any = MISSING, factory: Callable[[], Any] | None = None):
        self.default, self.factory = default, factory


def Field(default: Any = MISSING, *, default_factory: Any = None, **_: Any) -> Any:  # noqa: N802
    """pydantic's ``Field``: only the default is kept (the constraints were checked by the
    process that validated the file)."""
    return _FieldDefault(default, default_factory)


def PrivateAttr(default: Any = None, *, default_factory: Any = None) -> Any:  # noqa: N802
    return _FieldDefault(default, default_factory)


def ConfigDict(**kwargs: Any) -> dict[str, Any]:  # noqa: N802
    return dict(kwargs)


def _keep(*_: Any, **__: Any) -> Callable[[Any], Any]:
    """A validator or serializer decorator: the function stays, unused."""

    def deco(fn: Any) -> Any:
        return fn

    return deco


field_validator = model_validator = model_serializer = _keep


class ValidationError(ValueError):
    """Never raised by a plain model: named so that ``except ValidationError`` still reads."""


# Names the model modules import for their annotations only.
ModelWrapValidatorHandler = SerializationInfo = SerializerFunctionWrapHandler = Any
ValidationInfo = Any


def _is_classvar(annotation: Any) -> bool:
    return isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar"))


def _copy_default(value: Any) -> Any:
    # pydantic copies a mutable default for each instance; immutable ones are shared
    return copy.copy(value) if isinstance(value, list | dict | set) else value


class BaseModel:
    """A model's values in its ``__dict__``, its private attributes too (``_options``)."""

    model_config: ClassVar[dict[str, Any]] = {}
    __plain_fields__: ClassVar[dict[str, _FieldDefault]] = {}
    __plain_private__: ClassVar[dict[str, _FieldDefault]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__()
        fields: dict[str, _FieldDefault] = {}
        private: dict[str, _FieldDefault] = {}
        config: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "__plain_fields__", {}))
            private.update(getattr(base, "__plain_private__", {}))
            config.update(getattr(base, "model_config", {}))
        config.update(cls.__dict__.get("model_config", {}))
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if name == "model_config" or _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            spec = value if isinstance(value, _FieldDefault) else _FieldDefault(value)
            if isinstance(value, _FieldDefault):
                delattr(cls, name)  # the instances hold every value
            (private if name.startswith("_") else fields)[name] = spec
        cls.__plain_fields__, cls.__plain_private__, cls.model_config = fields, private, config
        if config.get("frozen"):
            cls.__hash__ = BaseModel._frozen_hash  # type: ignore[method-assign,assignment]

    def __init__(self, **data: Any) -> None:
        unknown = set(data) - set(self.__plain_fields__)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {sorted(unknown)}")
        for table in (self.__plain_fields__, self.__plain_private__):
            for name, spec in table.items():
                if name in data:
                    value = data[name]
                elif spec.factory is not None:
                    value = spec.factory()
                elif spec.default is MISSING:
                    raise TypeError(f"{type(self).__name__}: field {name!r} is required")
                else:
                    value = _copy_default(spec.default)
                self.__dict__[name] = value

    def __setstate__(self, state: dict[str, Any]) -> None:
        """pydantic's pickled state: its ``__dict__`` and its private attributes."""
        self.__dict__.update(state["__dict__"])
        self.__dict__.update(state.get("__pydantic_private__") or {})
        self.__dict__.update(state.get("__pydantic_extra__") or {})

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def _frozen_hash(self) -> int:
        return hash(tuple(self.__dict__[n] for n in self.__plain_fields__))

    __hash__ = None  # type: ignore[assignment]  # as pydantic's: only a frozen model's

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={self.__dict__.get(n)!r}" for n in self.__plain_fields__)
        return f"{type(self).__name__}({args})"

    @classmethod
    def model_construct(cls, **values: Any) -> Any:
        return cls(**values)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        out = copy.deepcopy(self) if deep else type(self).__new__(type(self))
        if not deep:
            out.__dict__.update(self.__dict__)
        out.__dict__.update(update or {})
        return out

    def model_dump(
        self,
        *,
        mode: str = "python",
        include: set[str] | None = None,
        exclude_none: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        out = {}
        for name in self.__plain_fields__:
            if include is not None and name not in include:
                continue
            value = self.__dict__[name]
            if exclude_none and value is None:
                continue
            out[name] = _dump(value, mode, exclude_none)
        return out


def _dump(value: Any, mode: str, exclude_none: bool) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode=mode, exclude_none=exclude_none)
    if isinstance(value, dict):
        return {k: _dump(v, mode, exclude_none) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_dump(v, mode, exclude_none) for v in value]
        return items if mode == "json" or isinstance(value, list) else type(value)(items)
    if mode == "json":
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, PurePath):
            return str(value)
        if isinstance(value, datetime | date | time):
            return value.isoformat().replace("+00:00", "Z")
        if isinstance(value, timedelta):
            raise TypeError("a timedelta in a plain model's JSON dump")
    return value
