"""The ``mqtt:`` section of an MQTT device. The broker is the site file's top-level ``mqtt:``
section (:class:`dcim.config.MqttBroker`), shared with the MQTT alert notifier."""

from __future__ import annotations

from dcim.modelbase import BaseModel, ConfigDict, Field


class MqttOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Concrete topic or filter (+, #) for this device; no other device's filter may overlap it.
    topic: str = Field(min_length=1)
    # The values a tag of the profile's topic template may take on this device's topics
    # (e.g. {zone: [north, south]}); a topic with another value is refused. Without it, any
    # value that fits the template is taken.
    tag_values: dict[str, list[str]] | None = None
