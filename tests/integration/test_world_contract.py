"""One contract suite for the World (what scenarios may ask of SUMO), run over libsumo and
traci: every call does what it says, and both backends give the same answers.

Each backend runs in its own spawned process (libsumo: one simulation per process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from city_models.build import City
from tests import spawned

pytestmark = pytest.mark.sumo

BACKENDS = ("libsumo", "traci")


def _observe(city_path: str, run_dir: str, backend: str) -> dict[str, Any]:
    """Exercise every World call on a short district run; return what was seen."""
    from city_models.build import load_city
    from city_models.graph import edge_graph, fastest_route
    from scenarios.loader import parse_scenario
    from twin.app.compose import make_session, session_config
    from twin.engine.world import World

    city = load_city(Path(city_path))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    spec = parse_scenario({
        "name": "world", "kind": "baseline", "seed": 5,
        "sim": {"duration_s": 900.0, "backend": backend},
    })  # fmt: skip
    cfg = session_config(spec, city, seed=5, run_dir=Path(run_dir))
    pois = {p.id: p for p in city.manifest.pois}
    graph = edge_graph(city.net)
    route = fastest_route(graph, pois["fire_station_1"].edge, pois["hospital_1"].edge)
    other = fastest_route(graph, pois["fire_station_2"].edge, pois["hospital_2"].edge)
    sig = city.manifest.signals[0]
    det = [d.id for d in city.manifest.detectors[:40]]
    out: dict[str, Any] = {"route": route}
    session = make_session(cfg, city, backend=backend)  # type: ignore[arg-type]
    world: World = session  # the concrete session satisfies the protocol (mypy checks it)
    with session:
        session.run(120.0)
        out["time_s"] = world.time_s
        out["state_t_s"] = world.state.t_s
        lanes = list(world.state.lane_ids)
        halt = np.zeros(len(lanes))
        world.read_lane_halting(lanes, halt)
        out["lane_halting"] = halt.tolist()
        edges = sorted(city.net.edges)[:50]
        ehalt = np.zeros(len(edges))
        world.read_edge_halting(edges, ehalt)
        out["edge_halting"] = ehalt.tolist()
        espeed = np.full(len(edges), np.nan)
        world.read_edge_speeds(edges, espeed)
        out["edge_speeds"] = (espeed.tolist(), [city.net.edges[e].speed_mps for e in edges])
        out["loop_counts"] = world.read_loop_counts(det)
        gap = np.zeros(len(det))
        world.read_loop_gap(det, gap)
        out["loop_gap_s"] = gap.tolist()
        out["travel_times"] = world.edge_travel_times(route)
        out["vehicles"] = sorted(world.vehicle_ids())
        some = out["vehicles"][0]
        r, i = world.vehicle_route(some)
        out["vehicle_route"] = (r, i)
        out["on_route"] = world.vehicles_on_route([some])
        out["lane_position_m"] = world.lane_position_m(some)
        out["lane_index"] = world.lane_index(some)
        out["edge_vehicle_ids"] = sorted(world.edge_vehicle_ids(r[i]))
        lane = f"{session.sumo.vehicle.getRoadID(some)}_{out['lane_index']}"
        out["approaching"] = [tuple(a) for a in world.approaching([lane], within_m=1e6)]
        out["approaching_near"] = [tuple(a) for a in world.approaching([lane], within_m=0.0)]
        out["some_lane"] = (lane, session.sumo.lane.getLength(lane) - out["lane_position_m"])

        # a probe vehicle: inserted, tracked, stopped, re-routed, taken out
        world.add_vehicle("probe", route, type_id="ambulance", depart_s=world.time_s)
        world.add_stop("probe", route[2], pos_m=5.0, duration_s=30.0)
        world.track(["probe"])
        session.run(150.0)
        world.read_tracked()
        st = world.state
        out["tracked"] = (st.tracked_ids, float(st.tracked_x_m[0]), float(st.tracked_y_m[0]),
                          st.tracked_edge[0], float(st.tracked_distance_m[0]))  # fmt: skip
        out["probe_present"] = world.vehicle_present("probe")
        here = world.vehicle_route("probe")
        out["probe_route"] = here
        # a new destination, then a street the driver believes blocked
        out["change_target"] = world.change_target("probe", other[-1])
        out["after_change"] = world.vehicle_route("probe")[0][-1]
        rest = world.vehicle_route("probe")[0][world.vehicle_route("probe")[1] :]
        avoid = rest[len(rest) // 2]
        world.avoid_edges("probe", [avoid], penalty_s=1e6)
        out["rerouted"] = world.reroute("probe")
        out["avoided"] = avoid
        world.keep_lane("probe", 0, duration_s=10.0)
        # the signal ahead, and a speed cap set and lifted (an EV's driver at red)
        ahead = world.next_signal("probe")
        out["next_signal"] = None if ahead is None else tuple(ahead)
        free = session.sumo.vehicle.getMaxSpeed("probe")
        world.cap_speed("probe", 3.0)
        capped = session.sumo.vehicle.getMaxSpeed("probe")
        world.cap_speed("probe", None)
        out["max_speed"] = (free, capped, session.sumo.vehicle.getMaxSpeed("probe"))
        world.remove_vehicle("probe")
        session.run(151.0)
        out["probe_present_after_remove"] = world.vehicle_present("probe")

        # network edits: limits and closures show in the travel-time estimate / routing
        empty = min(city.net.edges, key=lambda e: (len(world.edge_vehicle_ids(e)), e))
        lanes_of = [f"{empty}_{k}" for k in range(city.net.edges[empty].lanes)]
        before = world.edge_travel_times([empty])[empty]
        world.set_edge_max_speed(empty, 2.0)
        session.run(152.0)
        out["slow_edge"] = (empty, before, world.edge_travel_times([empty])[empty])
        slow = np.full(1, np.nan)
        world.read_edge_speeds([empty], slow)
        out["slow_edge_speed_mps"] = float(slow[0])
        world.set_lane_max_speed(lanes_of, 5.0)
        world.close_lanes(lanes_of)
        world.set_lane_allowed(lanes_of[:1], ["emergency"])
        world.reopen_lanes(lanes_of)
        out["disallowed_after_reopen"] = [
            list(session.sumo.lane.getDisallowed(ln)) for ln in lanes_of
        ]

        # signals: a state shown, and a program switched back
        world.set_signal_state(sig.id, sig.phases[-1].state)
        session.run(153.0)
        out["shown"] = session.sumo.trafficlight.getRedYellowGreenState(sig.id)
        world.set_program(sig.id, "0")
        out["program"] = session.sumo.trafficlight.getProgram(sig.id)
    out["expected_state"] = sig.phases[-1].state
    return out


def _in_process(fn: Any, *args: Any) -> Any:
    return spawned.in_process(fn, *args)


@pytest.fixture(scope="module")
def observed(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("world")
    return {b: _in_process(_observe, str(district_city.path), str(root / b), b) for b in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_world_call_does_what_it_says(
    observed: dict[str, Any], backend: str, district_city: City
) -> None:
    o = observed[backend]
    assert o["time_s"] == o["state_t_s"] == 120.0
    assert any(o["lane_halting"]) or sum(o["loop_counts"]) > 0  # traffic is there
    assert all(c >= 0 for c in o["loop_counts"]) and sum(o["loop_counts"]) > 0
    # seconds since each loop's last vehicle (0 on an occupied loop; large on one that
    # never saw any): some loops saw one recently
    assert all(g >= 0.0 for g in o["loop_gap_s"]) and min(o["loop_gap_s"]) < 10.0
    assert all(t > 0 for t in o["travel_times"].values())
    route, index = o["vehicle_route"]
    assert 0 <= index < len(route)
    assert o["on_route"][0][1] == index
    assert o["lane_position_m"] >= 0 and o["lane_index"] >= 0
    assert o["vehicles"][0] in o["edge_vehicle_ids"]
    lane, to_end = o["some_lane"]
    cars = {a[0]: a for a in o["approaching"]}
    _vid, a_lane, a_distance, _speed = cars[o["vehicles"][0]]
    assert a_lane == lane and a_distance == pytest.approx(to_end)
    assert all(a[1] == lane and a[2] >= -1e-9 and a[3] >= 0 for a in o["approaching"])
    assert all(a[2] <= 0.0 for a in o["approaching_near"])  # within_m is a bound
    ids, x, y, edge, dist = o["tracked"]
    assert ids == ["probe"] and np.isfinite([x, y]).all() and dist > 0
    assert o["probe_present"]
    assert edge in o["route"] or edge.startswith(":")  # on its route (or inside a junction)
    assert o["change_target"] is True
    assert o["after_change"] == o["rerouted"][-1]
    assert o["avoided"] not in o["rerouted"]  # the believed-blocked street is avoided
    assert o["probe_present_after_remove"] is False
    tls, link, distance, state = o["next_signal"]  # its route crosses signals
    assert tls in {s.id for s in district_city.manifest.signals}
    assert link >= 0 and distance >= 0 and state in "rRyYgGsuoO"
    free, capped, lifted = o["max_speed"]
    assert capped == 3.0 and lifted == free > 3.0
    _edge, before, after = o["slow_edge"]
    assert after > before  # 2 m/s limit: the empty street's estimate grows
    assert o["slow_edge_speed_mps"] == pytest.approx(2.0)  # an empty edge: its limit
    speeds, limits = o["edge_speeds"]
    # measured speeds: none negative, none beyond the limit by more than drivers' speed
    # factors (ambulances +20 %, drivers' spread), and traffic moves somewhere
    assert all(0.0 <= v <= 1.5 * lim for v, lim in zip(speeds, limits, strict=True))
    assert any(v < lim for v, lim in zip(speeds, limits, strict=True))
    assert all("emergency" not in d and "passenger" not in d
               for d in o["disallowed_after_reopen"])  # fmt: skip
    assert o["shown"] == o["expected_state"]
    assert o["program"] == "0"


def test_libsumo_and_traci_give_the_same_answers(observed: dict[str, Any]) -> None:
    a, b = observed["libsumo"], observed["traci"]
    assert a.keys() == b.keys()
    diff = {k for k in a if a[k] != b[k]}
    assert diff == set()
