"""MQTT in and out through a real broker (a Mosquitto of our own, on a free port).

One live service (over one emulated controller) runs on an asyncio loop in a thread of
its own for the whole module, subscribed to the broker as in production; the tests
publish and subscribe with plain paho clients (callback API version 2, set explicitly)
and read what the service made of it from its audit log. The broker restart comes last.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest

from city_models.build import City
from tests.twin.live.conftest import needs_mosquitto
from tests.twin.live.harness import Center, ev, mission, start_center
from twin.app.live.clock import LiveClock
from twin.app.live.mqtt import detector_topic, gps_topic, new_client
from twin.app.live.procs import Broker, EmulatorProcess, free_port, start_emulator
from twin.app.live.trace import Trace, gps_message

pytestmark = [pytest.mark.slow, needs_mosquitto]

T = TypeVar("T")
SPEED = 10.0
SIGNAL = "n9_11"
WAIT_S = 10.0
"""Wall seconds to wait for a message to make its way (it takes milliseconds; the rest
is slack for a loaded machine)."""
RECONNECT_S = 20.0
"""Wall seconds for the service to find the restarted broker (paho retries every 1-2 s)."""


@dataclass
class Live:
    """The running service, its loop's thread, the broker and the EV."""

    center: Center
    loop: asyncio.AbstractEventLoop
    broker: Broker
    emulator: EmulatorProcess
    city: City
    trace: Trace
    next_point: int = 0
    clients: list[mqtt.Client] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def on_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.run(self.center.svc.call(fn, *args, **kwargs), 10.0)

    def client(self, name: str) -> mqtt.Client:
        c = new_client(f"test-{name}-{uuid.uuid4().hex[:6]}")
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        self.clients.append(c)
        return c

    def publish(self, topic: str, payload: bytes) -> None:
        c = self.client("pub")
        info = c.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT_S)
        assert info.is_published(), topic

    def fix(self) -> bytes:
        """The EV's next fix, stamped now."""
        _t, x, y, v = self.trace.points[self.next_point]
        self.next_point += 1
        msg = gps_message(
            self.city, self.trace.vehicle, t_wall=time.time(), x_m=x, y_m=y, speed_mps=v
        )
        return json.dumps(msg).encode()

    def record(self, match: Callable[[dict[str, Any]], bool], *, after: int = -1) -> dict[str, Any]:
        """The first audit record after seq ``after`` that matches, waited for."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for r in self.center.records():
                if r.get("seq", -1) > after and match(r):
                    return r
            time.sleep(0.05)
        raise AssertionError("no such audit record")

    def last_seq(self) -> int:
        return max(int(r.get("seq", -1)) for r in self.center.records())


def _stop_clients(clients: list[mqtt.Client]) -> None:
    for c in clients:
        c.loop_stop()
        c.disconnect()
    clients.clear()


@pytest.fixture(scope="module")
def live(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("mqtt")
    clock = LiveClock.time_of_day(SPEED)
    em = start_emulator(
        district_city.path,
        clock=clock,
        workdir=tmp / "emulator",
        field_backup_time_s=6,
        field_heartbeat_s=2.0,
    )
    broker = Broker(free_port()).start()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live service", daemon=True)
    thread.start()
    center: Center | None = None
    trace = ev(district_city, "amb_mq", "fire_station_1", "hospital_1")
    try:
        center = asyncio.run_coroutine_threadsafe(
            start_center(
                district_city, em, clock, tmp, signals=[SIGNAL],
                mqtt_host="127.0.0.1", mqtt_port=broker.port,
                client_id=f"citytwin-test-center-{uuid.uuid4().hex[:6]}",
            ),
            loop,
        ).result(60.0)  # fmt: skip
        live = Live(center, loop, broker, em, district_city, trace)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not (center.svc.mqtt and center.svc.mqtt.connected):
            time.sleep(0.05)
        live.on_loop(center.svc.dispatch, mission(trace))
        yield live
        _stop_clients(live.clients)
    finally:
        if center is not None:
            asyncio.run_coroutine_threadsafe(center.svc.stop(hand_back=False), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        broker.stop()
        em.stop()


def test_gps_over_mqtt_is_accepted_and_tracked(live: Live) -> None:
    _t, x, y, _v = live.trace.points[live.next_point]
    live.publish(gps_topic("fire", "amb_mq"), live.fix())
    rec = live.record(lambda r: r["kind"] == "gps" and r.get("ev") == "amb_mq")
    assert rec["accepted"] and rec["source"] == "mqtt", rec
    assert rec["agency"] == "fire"
    # the position made it through the phone's lat/lon and back (centimetres)
    assert abs(rec["x_m"] - x) < 0.5 and abs(rec["y_m"] - y) < 0.5, (rec, x, y)
    assert live.center.svc.ingest.accepted >= 1


def test_bad_gps_over_mqtt_is_rejected_with_its_reason_in_the_audit(live: Live) -> None:
    after = live.last_seq()
    live.publish(gps_topic("fire", "amb_mq"), b"\x00 not json")
    rec = live.record(
        lambda r: r["kind"] == "gps" and r.get("source") == "mqtt" and not r["accepted"],
        after=after,
    )
    assert rec["reason"] == "malformed" and "JSON" in rec["detail"], rec
    # another vehicle's fix on this vehicle's topic
    after = rec["seq"]
    other = json.loads(live.fix()) | {"vehicle": "amb_other"}
    live.publish(gps_topic("fire", "amb_mq"), json.dumps(other).encode())
    rec = live.record(lambda r: r["kind"] == "gps" and not r["accepted"], after=after)
    assert rec["reason"] == "malformed" and "amb_other" in rec["detail"], rec
    # the right vehicle under another agency's topic
    after = rec["seq"]
    live.publish(gps_topic("police", "amb_mq"), live.fix())
    rec = live.record(lambda r: r["kind"] == "gps" and not r["accepted"], after=after)
    assert rec["reason"] == "agency_mismatch" and rec["ev"] == "amb_mq", rec
    assert live.center.svc.ingest.rejected.get("malformed", 0) >= 2


def test_detector_counts_over_mqtt_are_counted(live: Live) -> None:
    loop_id = next(d.id for d in live.city.manifest.detectors if d.tls == SIGNAL)
    after = live.last_seq()
    count = {"loop": loop_id, "t_end": time.time() - 1.0, "interval_s": 30, "count_veh": 7}
    live.publish(detector_topic(loop_id), json.dumps(count).encode())
    rec = live.record(lambda r: r["kind"] == "detector", after=after)
    assert rec["accepted"] and rec["loop"] == loop_id and rec["count_veh"] == 7, rec
    after = rec["seq"]
    live.publish(detector_topic("nope"), json.dumps(count | {"loop": "nope"}).encode())
    rec = live.record(lambda r: r["kind"] == "detector", after=after)
    assert not rec["accepted"] and rec["reason"] == "unknown_loop", rec


def _spat_subscriber(live: Live) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    subscribed = threading.Event()
    c = new_client(f"test-spat-{uuid.uuid4().hex[:6]}")
    c.on_message = lambda _c, _u, msg: got.append((msg.topic, json.loads(msg.payload)))
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", live.broker.port)
    c.loop_start()
    live.clients.append(c)
    c.subscribe("citytwin/spat/#", qos=0)
    assert subscribed.wait(WAIT_S)
    return got


def _wait_spat(got: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    # every signal's SPaT goes out every spat_every_wall_s (1 s) and on every change
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not got:
        time.sleep(0.05)
    assert got, "no SPaT received"
    return got[0]


def test_spat_is_published_per_signal(live: Live) -> None:
    topic, msg = _wait_spat(_spat_subscriber(live))
    assert topic == f"citytwin/spat/{SIGNAL}" and msg["intersection"] == SIGNAL
    assert msg["states"] and not msg["status"]["controllerDown"], msg
    # what came over the broker is what the service published
    history = live.on_loop(lambda: list(live.center.svc.spat_history[SIGNAL]))
    assert msg in history


def test_the_service_survives_a_broker_restart(live: Live) -> None:
    svc = live.center.svc
    assert svc.mqtt is not None and svc.mqtt.connected
    connects = svc.mqtt.connects
    _stop_clients(live.clients)
    live.broker.restart(down_s=0.5)
    deadline = time.monotonic() + RECONNECT_S
    while time.monotonic() < deadline and not (svc.mqtt.connected and svc.mqtt.connects > connects):
        time.sleep(0.05)
    assert svc.mqtt.connects > connects and svc.mqtt.connected, vars(svc.mqtt)
    assert svc.mqtt.disconnects >= 1
    # subscribed again: a later fix is accepted ...
    after = live.last_seq()
    live.publish(gps_topic("fire", "amb_mq"), live.fix())
    rec = live.record(lambda r: r["kind"] == "gps" and r.get("ev") == "amb_mq", after=after)
    assert rec["accepted"] and rec["source"] == "mqtt", rec
    # ... and SPaT goes out again
    topic, _msg = _wait_spat(_spat_subscriber(live))
    assert topic == f"citytwin/spat/{SIGNAL}"
