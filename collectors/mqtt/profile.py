"""MQTT profiles: each field is a value at a dot-separated ``json`` path of the payload; the
profile's ``topic`` template's ``{name}`` segments become tags, e.g.
``dcim/{site}/greenhouse/{zone}/climate``."""

from __future__ import annotations

import re
from typing import Literal

from dcim.modelbase import Field
from dcim.profiles import FieldSpec, Profile, ReadingShape

# Identity tags always come from the config, not the topic.
RESERVED_TAGS = ("site", "device")


class MqttField(FieldSpec):
    """One field of an MQTT profile: ``json``, the dot-separated path of its value in the
    payload (a list element by its index: ``phases.0.power``)."""

    json_path: str = Field(alias="json", min_length=1)


class MqttProfile(Profile):
    protocol: Literal["mqtt"]
    fields: tuple[MqttField, ...] = ()
    # Topic template; ``{name}`` segments become tags, e.g. "greenhouse/{zone}/climate".
    topic: str

    def topic_tags(self) -> frozenset[str]:
        """The tags the topic template gives (less those the config always sets)."""
        return frozenset(re.findall(r"\{([a-z][a-z0-9_]*)\}", self.topic)) - set(RESERVED_TAGS)

    def shapes(self) -> list[ReadingShape]:
        return [s.model_copy(update={"tags": self.topic_tags()}) for s in super().shapes()]

    def field(self, name: str) -> MqttField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"profile {self.name!r} has no field {name!r}")
