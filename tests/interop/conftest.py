"""Shared helpers for the interoperability scenarios: where the broker is,
and a paho-mqtt (2.x API) client wrapper whose every wait is on an event
with a timeout, never a fixed sleep."""

import os
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = os.environ.get("VANE_HOST", "127.0.0.1")
PORT = int(os.environ.get("VANE_PORT", "0"))
# Upper bound on any single wait; loopback answers take milliseconds.
TIMEOUT = 10.0

VERSIONS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5.0": mqtt.MQTTv5}


def pytest_collection_modifyitems(config, items):
    if PORT == 0:
        skip = pytest.mark.skip(reason="no broker: run tests/interop/run.sh (sets VANE_PORT)")
        for item in items:
            item.add_marker(skip)


def uid(prefix="it"):
    """A short unique name (MQTT 3.1 client ids are at most 23 characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def props(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Client:
    """One paho-mqtt client on its own network thread. Received messages,
    SUBACKs and acknowledgements are recorded under one condition variable
    that the wait_* methods block on, each with a timeout."""

    def __init__(self, version="3.1.1", client_id=None, clean=True, will=None):
        self.version = VERSIONS[version]
        self.client_id = client_id or uid("c")
        self.clean = clean
        kwargs = {} if self.version == mqtt.MQTTv5 else {"clean_session": clean}
        self.mqtt = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.version,
            **kwargs,
        )
        self.cond = threading.Condition()
        self.messages = []
        self.subacks = {}
        self.acks = {}
        self.connack = None
        self.disconnects = []
        if will is not None:
            self.mqtt.will_set(**will)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_disconnect = self._on_disconnect

    # paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = (flags, reason_code, properties)
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.acks[mid] = reason_code
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.disconnects.append(reason_code)
            self.cond.notify_all()

    def wait(self, predicate, what):
        with self.cond:
            ok = self.cond.wait_for(predicate, timeout=TIMEOUT)
        assert ok, f"{self.client_id}: timed out after {TIMEOUT}s waiting for {what}"

    # actions (test thread)
    def connect(self, keepalive=30, clean_start=None, properties=None):
        """Connects and waits for the CONNACK; returns (flags, reason code,
        properties)."""
        kwargs = {}
        if self.version == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean if clean_start is None else clean_start
            kwargs["properties"] = properties
        self.connack = None
        self.mqtt.connect(HOST, PORT, keepalive, **kwargs)
        self.mqtt.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        flags, reason_code, _ = self.connack
        assert not reason_code.is_failure, f"CONNACK {reason_code}"
        return self.connack

    def subscribe(self, topic, qos=0, **options):
        """Subscribes and waits for the SUBACK; returns its reason codes."""
        if self.version == mqtt.MQTTv5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            result, mid = self.mqtt.subscribe(topic, options=SubscribeOptions(qos=qos, **options))
        else:
            result, mid = self.mqtt.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes; for QoS 1 and 2 waits for the PUBACK/PUBCOMP."""
        info = self.mqtt.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        if qos > 0:
            self.wait(lambda: info.mid in self.acks, f"acknowledgement of {topic!r}")
        return info

    def wait_messages(self, count, what="messages"):
        self.wait(lambda: len(self.messages) >= count, f"{count} {what}")
        return list(self.messages)

    def wait_payload(self, payload):
        """Waits until a message with `payload` arrived; returns everything
        received so far."""
        if isinstance(payload, str):
            payload = payload.encode()
        self.wait(lambda: any(m.payload == payload for m in self.messages), f"payload {payload!r}")
        return list(self.messages)

    def disconnect(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT (as a crashed client)."""
        self.mqtt.loop_stop()
        sock = self.mqtt.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def clients():
    """Clients a test makes; all are stopped at its end."""
    made = []

    def make(*args, **kwargs):
        client = Client(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        try:
            client.mqtt.disconnect()
        except Exception:
            pass
        client.mqtt.loop_stop()


__all__ = ["Client", "HOST", "PORT", "TIMEOUT", "PacketTypes", "props", "uid"]
