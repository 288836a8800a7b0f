"""The pydantic names the site file's models are written with: pydantic's own, or, in a
process that called :func:`dcim.plainmodel.activate` before importing any model module (the
long-running ``dcim run``), the plain stand-ins of :mod:`dcim.plainmodel`. Every model module
(dcim.config, dcim.profiles, dcim.alerts.rules, dcim.reports.settings, the protocol plugins'
options and profiles) imports them from here, never from pydantic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcim import plainmodel

if TYPE_CHECKING or not plainmodel.ACTIVE:
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        ModelWrapValidatorHandler,
        PrivateAttr,
        SerializationInfo,
        SerializerFunctionWrapHandler,
        ValidationError,
        ValidationInfo,
        field_validator,
        model_serializer,
        model_validator,
    )
else:
    from dcim.plainmodel import (
        BaseModel,
        ConfigDict,
        Field,
        ModelWrapValidatorHandler,
        PrivateAttr,
        SerializationInfo,
        SerializerFunctionWrapHandler,
        ValidationError,
        ValidationInfo,
        field_validator,
        model_serializer,
        model_validator,
    )

PLAIN = plainmodel.ACTIVE

__all__ = [
    "PLAIN",
    "BaseModel",
    "ConfigDict",
    "Field",
    "ModelWrapValidatorHandler",
    "PrivateAttr",
    "SerializationInfo",
    "SerializerFunctionWrapHandler",
    "ValidationError",
    "ValidationInfo",
    "field_validator",
    "model_serializer",
    "model_validator",
]
