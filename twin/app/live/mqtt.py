"""The live service's MQTT client (paho-mqtt 2, callback API version 2, set explicitly).

Subscribes to ``citytwin/ev/+/+/gps`` and ``citytwin/detector/+`` and publishes SPaT on
``citytwin/spat/{signal}``. paho runs its network loop in its own thread; every message
is handed to the asyncio loop with its arrival time (``loop.call_soon_threadsafe``), so
all of the center's work stays on one thread. The client reconnects by itself after a
broker restart and subscribes again on every connect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

GPS_TOPIC = "citytwin/ev/+/+/gps"
DETECTOR_TOPIC = "citytwin/detector/+"
SPAT_TOPIC = "citytwin/spat/{signal}"


@dataclass(frozen=True)
class Received:
    """One message as it arrived."""

    topic: str
    payload: bytes
    received_wall: float


def gps_topic(agency: str, vehicle: str) -> str:
    return f"citytwin/ev/{agency}/{vehicle}/gps"


def detector_topic(loop_id: str) -> str:
    return f"citytwin/detector/{loop_id}"


def parse_gps_topic(topic: str) -> tuple[str, str] | None:
    """(agency, vehicle) of a GPS topic, or ``None``."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == "citytwin" and parts[1] == "ev" and parts[4] == "gps":
        return parts[2], parts[3]
    return None


def new_client(client_id: str) -> mqtt.Client:
    """A paho client with the version 2 callback API (stated, not defaulted)."""
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )


class MqttLink:
    """Subscriptions in, SPaT out.

    Parameters
    ----------
    host, port
        The broker.
    client_id
        This client's id.
    deliver
        Called on the asyncio loop with every message received.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        deliver: Callable[[Received], None],
        subscribe: tuple[str, ...] = (GPS_TOPIC, DETECTOR_TOPIC),
    ) -> None:
        self.host, self.port = host, port
        self.deliver = deliver
        self.topics = subscribe
        self.client = new_client(client_id)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        self.connected = True
        self.connects += 1
        for topic in self.topics:
            client.subscribe(topic, qos=0)
        log.info(
            "MQTT connected to %s:%d (%s); subscribed %s",
            self.host,
            self.port,
            reason,
            ", ".join(self.topics),
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        self.connected = False
        self.disconnects += 1
        log.warning("MQTT disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        item = Received(msg.topic, bytes(msg.payload), time.time())
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.deliver, item)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0) -> bool:
        """Publish (thread-safe); False when not connected (nothing is queued)."""
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos)
        return info.rc == mqtt.MQTT_ERR_SUCCESS
