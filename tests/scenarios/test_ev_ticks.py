"""The ev_priority scenario's per-tick bookkeeping without SUMO: every EV en route gets
its route-guidance check, and each hold of a signal is kept with the approaches it held
red (the ``ev_holds`` series behind the benchmark's cross-street queue growth)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from scenarios.ev_priority import EvPriority, EvPrioritySpec
from scenarios.loader import parse_scenario
from twin.center.travel_times import EdgeTravelTimes


def _scenario() -> EvPriority:
    raw = {"name": "ev", "kind": "ev_priority",
           "evs": [{"id": "amb1", "dispatch_s": 60.0, "station": "fire_station_1"},
                   {"id": "amb2", "dispatch_s": 90.0, "station": "fire_station_2"}]}  # fmt: skip
    sc = EvPriority(cast(EvPrioritySpec, parse_scenario(raw)))
    for ev in sc.evs.values():  # both on their way
        ev.track.route = ["a", "b"]
        ev.inserted_s = 60.0
    return sc


class _Manager:
    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}

    def holding(self, ev_id: str) -> list[str]:
        return self.held.get(ev_id, [])


def _ctx(t_s: float, halting: float = 2.0) -> Any:
    def read_lane_halting(lanes: list[str], buf: np.ndarray) -> None:
        buf[:] = halting

    def read_edge_speeds(edges: list[str], buf: np.ndarray) -> None:
        buf[:] = t_s / 60.0  # each tick its own speed: the samples can be told apart

    return SimpleNamespace(
        session=SimpleNamespace(
            time_s=t_s, read_lane_halting=read_lane_halting, read_edge_speeds=read_edge_speeds
        )
    )


def _wire(sc: EvPriority) -> tuple[_Manager, list[tuple[str, float]]]:
    manager = _Manager()
    sc.manager = manager  # type: ignore[assignment]
    sig = SimpleNamespace(incoming_lanes=("n_in_0", "n_in_1", "w_in_0", "e_in_0"))
    sc.signal_spec = {"J1": sig}  # type: ignore[dict-item]
    sc.travel = EdgeTravelTimes({"a": 100.0, "b": 60.0}, interval_s=30.0, window_s=60.0)
    ev_sig = SimpleNamespace(tls="J1", approach_lanes=("n_in_0", "n_in_1"))
    for ev in sc.evs.values():
        ev.track.signals = [ev_sig]  # type: ignore[list-item]
    calls: list[tuple[str, float]] = []

    def reroute(ctx: Any, ev: Any) -> None:
        calls.append((ev.spec.id, ctx.session.time_s))
        ev.last_reroute_s = ctx.session.time_s

    sc._reroute = reroute  # type: ignore[method-assign]
    return manager, calls


def test_every_ev_en_route_gets_its_route_check_held_or_not() -> None:
    sc = _scenario()
    manager, calls = _wire(sc)
    sc.on_interval(_ctx(120.0))  # nobody holds a signal
    assert calls == [("amb1", 120.0), ("amb2", 120.0)]
    manager.held = {"amb1": ["J1"]}
    sc.on_interval(_ctx(150.0))  # not due yet (every 60 s)
    sc.on_interval(_ctx(180.0))
    assert calls[2:] == [("amb1", 180.0), ("amb2", 180.0)]
    sc.evs["amb2"].arrived_s = 200.0
    sc.on_interval(_ctx(240.0))  # arrived: no more checks
    assert calls[4:] == [("amb1", 240.0)]
    # every tick sampled the edges' speeds for route guidance (the last two in the mean)
    assert sc.travel.samples == 2
    assert sc.travel.times_s() == {"a": 100.0 / 3.5, "b": 60.0 / 3.5}


def test_a_hold_is_kept_from_its_first_to_its_last_tick_with_the_cross_street() -> None:
    sc = _scenario()
    manager, _ = _wire(sc)
    manager.held = {"amb1": ["J1"]}
    for t in (100.0, 101.0, 102.0):
        sc.on_interval(_ctx(t, halting=float(t - 95.0)))
    manager.held = {}
    sc.on_interval(_ctx(103.0))
    assert sc.hold_rows == [{"ev": "amb1", "tls_id": "J1", "start_s": 100.0, "end_s": 102.0,
                             "cross_edges": "e_in,w_in"}]  # fmt: skip
    assert sc.cross_queue_max == {"J1": 7.0}
    manager.held = {"amb2": ["J1"]}  # still held when the run ends: closed by series()
    sc.on_interval(_ctx(110.0))
    holds = sc.series()["ev_holds"]
    assert list(holds["ev"]) == ["amb1", "amb2"]
    assert list(holds["end_s"]) == [102.0, 110.0]
    assert not math.isnan(float(holds["start_s"].iloc[1]))
