"""The ``mqtt:`` section of an MQTT device. The broker is the site file's top-level ``mqtt:``
section (:class:`dcim.config.MqttBroker`), shared with the MQTT alert notifier."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MqttOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str  # concrete topic or filter for this device
