"""The benchmark's phones: a light process that publishes GPS fixes over MQTT.

It imports paho only (not the city, not numba), so starting it does not take the CPU
from the center being measured. Each EV's fixes are given as ``(lat, lon, speed_mps)``;
every message carries its publication time (``t`` and ``sent_wall``).
"""

from __future__ import annotations

import heapq
import json
import time
import uuid
from typing import Any

from twin.app.live.mqtt import gps_topic, new_client


def publish(
    port: int,
    plans: list[tuple[str, list[tuple[float, float, float]]]],
    start_wall: float,
    duration_s: float,
    rate_hz: float,
    out: Any,
) -> None:
    """Publish each EV's fixes at ``rate_hz`` (phases spread) from ``start_wall`` for
    ``duration_s``; puts the number published on ``out``."""
    client = new_client(f"bench-phone-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    n = max(len(plans), 1)
    heap = [(start_wall + k / (n * rate_hz), k) for k in range(len(plans))]
    heapq.heapify(heap)
    step = [0] * len(plans)
    published = 0
    end = start_wall + duration_s
    while heap:
        due, k = heapq.heappop(heap)
        if due > end:
            break
        time.sleep(max(0.0, due - time.time()))
        vehicle, pts = plans[k]
        lat, lon, v = pts[min(step[k], len(pts) - 1)]
        step[k] += 1
        now = time.time()
        msg = {"vehicle": vehicle, "t": round(now, 4), "lat": lat, "lon": lon,
               "speed_mps": v, "accuracy_m": 5.0, "sent_wall": now}  # fmt: skip
        client.publish(gps_topic("fire", vehicle), json.dumps(msg).encode(), qos=0)
        published += 1
        heapq.heappush(heap, (due + 1.0 / rate_hz, k))
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    out.put(published)
