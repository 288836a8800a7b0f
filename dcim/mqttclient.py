"""A paho-mqtt client for the site's broker (the ``mqtt:`` section): credentials, TLS with an
optional client certificate, quick reconnects. Shared by the MQTT collector
(:mod:`collectors.mqtt`), the alerts' MQTT notifier and the twin's publishers."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dcim.config import MqttBroker


def make_client(
    broker: MqttBroker, client_id: str, *, clean_session: bool, manual_ack: bool = False
) -> mqtt.Client:
    """A paho 2 client for ``broker`` (credentials, TLS, quick reconnects), not yet connected.
    ``manual_ack``: QoS 1 messages are acknowledged by ``client.ack``, not on return from
    ``on_message``."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if broker.username is not None:
        password = broker.password.resolve() if broker.password is not None else None
        client.username_pw_set(broker.username, password)
    if broker.tls_ca is not None or broker.tls_cert is not None:
        client.tls_set(
            ca_certs=str(broker.tls_ca) if broker.tls_ca is not None else None,
            certfile=str(broker.tls_cert) if broker.tls_cert is not None else None,
            keyfile=str(broker.tls_key) if broker.tls_key is not None else None,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=2)  # back within seconds of a restart
    client.max_queued_messages_set(10_000)
    return client
