"""Tests of the event bus (twin.engine.events): SimPy advanced in lockstep with SUMO time."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from twin.engine.events import BusEvent, EventBus


def test_starts_at_the_given_time() -> None:
    assert EventBus().now_s == 0.0
    bus = EventBus(start_s=3600.0)
    assert bus.now_s == 3600.0
    assert bus.events == []


def test_at_runs_the_action_once_the_bus_passes_its_time() -> None:
    bus = EventBus()
    fired: list[float] = []
    bus.at(30.0, lambda: fired.append(bus.now_s), name="incident")
    bus.advance_to(25.0)
    assert fired == []
    assert bus.now_s == 25.0
    bus.advance_to(35.0)
    assert fired == [30.0]  # runs at its own time, not at the tick
    assert bus.now_s == 35.0
    bus.advance_to(100.0)
    assert fired == [30.0]  # once
    assert bus.events == [BusEvent(30.0, "incident", {})]


def test_at_fires_when_the_tick_is_exactly_its_time() -> None:
    bus = EventBus()
    fired: list[float] = []
    bus.at(30.0, lambda: fired.append(bus.now_s), name="call")
    bus.advance_to(29.0)
    assert fired == []
    bus.advance_to(30.0)
    assert fired == [30.0]
    assert bus.now_s == 30.0


def test_at_now_fires_on_the_next_advance() -> None:
    bus = EventBus(start_s=10.0)
    fired: list[float] = []
    bus.at(10.0, lambda: fired.append(bus.now_s), name="now")
    bus.advance_to(10.0)
    assert fired == [10.0]


def test_actions_run_in_time_order() -> None:
    bus = EventBus()
    order: list[str] = []
    for t, name in [(50.0, "c"), (10.0, "a"), (20.0, "b"), (20.0, "b2")]:
        bus.at(t, lambda name=name: order.append(name), name=name)
    bus.advance_to(60.0)
    assert order == ["a", "b", "b2", "c"]
    assert [e.t_s for e in bus.events] == [10.0, 20.0, 20.0, 50.0]
    assert [e.kind for e in bus.events] == ["a", "b", "b2", "c"]


def test_scheduling_in_the_past_raises() -> None:
    bus = EventBus()
    bus.advance_to(100.0)
    with pytest.raises(ValueError, match="dispatch"):
        bus.at(99.0, lambda: None, name="dispatch")
    with pytest.raises(ValueError, match="100"):
        EventBus(start_s=100.0).at(0.0, lambda: None, name="early")


def test_processes_wake_in_lockstep_with_the_ticks() -> None:
    bus = EventBus()
    woke: dict[str, list[float]] = {"fast": [], "slow": []}

    def ticker(name: str, every: float) -> Generator[simpy.Event, Any, None]:
        while True:
            yield bus.env.timeout(every)
            woke[name].append(bus.now_s)

    bus.process(ticker("fast", 10.0))
    bus.process(ticker("slow", 25.0))
    seen: list[tuple[float, int, int]] = []
    for tick in range(5, 65, 5):  # control ticks every 5 s
        bus.advance_to(float(tick))
        assert bus.now_s == tick
        # by the end of each tick, everything due at or before it has happened
        assert woke["fast"] == [t for t in (10.0, 20.0, 30.0, 40.0, 50.0, 60.0) if t <= tick]
        assert woke["slow"] == [t for t in (25.0, 50.0) if t <= tick]
        seen.append((tick, len(woke["fast"]), len(woke["slow"])))
    assert seen[-1] == (60, 6, 2)


def test_process_can_chain_timeouts_and_record() -> None:
    bus = EventBus(start_s=100.0)

    def dispatch() -> Generator[simpy.Event, Any, None]:
        bus.record("call", unit="ambulance_1")
        yield bus.env.timeout(45.0)
        bus.record("arrived", unit="ambulance_1")

    bus.process(dispatch())
    bus.advance_to(100.0)
    assert [e.kind for e in bus.events] == ["call"]
    bus.advance_to(140.0)
    assert [e.kind for e in bus.events] == ["call"]
    bus.advance_to(145.0)
    assert bus.events == [
        BusEvent(100.0, "call", {"unit": "ambulance_1"}),
        BusEvent(145.0, "arrived", {"unit": "ambulance_1"}),
    ]


def test_zero_timeouts_at_the_tick_all_run() -> None:
    bus = EventBus()
    steps: list[float] = []

    def burst() -> Generator[simpy.Event, Any, None]:
        yield bus.env.timeout(20.0)
        for _ in range(3):
            steps.append(bus.now_s)
            yield bus.env.timeout(0)
        steps.append(bus.now_s)

    bus.process(burst())
    bus.advance_to(20.0)
    assert steps == [20.0, 20.0, 20.0, 20.0]


def test_advance_backwards_is_a_no_op() -> None:
    bus = EventBus()
    fired: list[float] = []
    bus.at(50.0, lambda: fired.append(bus.now_s), name="x")
    bus.advance_to(40.0)
    bus.advance_to(10.0)
    assert bus.now_s == 40.0
    assert fired == []


def test_record_appends_with_the_current_time() -> None:
    bus = EventBus(start_s=7.0)
    first = bus.record("start", period="am_peak")
    assert first == BusEvent(7.0, "start", {"period": "am_peak"})
    bus.advance_to(12.5)
    second = bus.record("warning", vms="vms_1", text="detour")
    assert second.t_s == 12.5
    assert bus.events == [first, second]
    assert bus.events[-1].data == {"vms": "vms_1", "text": "detour"}
    with pytest.raises(AttributeError):
        second.t_s = 0.0  # type: ignore[misc]


def test_events_have_independent_data() -> None:
    a, b = BusEvent(0.0, "a"), BusEvent(0.0, "b")
    a.data["k"] = 1
    assert b.data == {}
