"""Approaches of a signal without SUMO: the upstream chain through a turn pocket, and the
queue per approach from lane arrays (issue 15, "honest metrics")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.engine.run import JAM_GAP_M, Approaches, SessionWiring
from twin.engine.sumo_session import upstream_chains

NET = """<net>
    <edge id=":J_0" function="internal"><lane id=":J_0_0" length="5"/></edge>
    <edge id="street" from="A" to="P"><lane id="street_0" length="150"/>
        <lane id="street_1" length="150"/></edge>
    <edge id="street_pocket" from="P" to="J"><lane id="street_pocket_0" length="40"/>
        <lane id="street_pocket_1" length="40"/><lane id="street_pocket_2" length="40"/></edge>
    <edge id="side" from="B" to="J"><lane id="side_0" length="200"/></edge>
    <edge id="feeder1" from="C" to="B"><lane id="feeder1_0" length="90"/></edge>
    <edge id="feeder2" from="D" to="B"><lane id="feeder2_0" length="90"/></edge>
    <connection from="street" to="street_pocket" fromLane="0" toLane="0"/>
    <connection from="street" to="street_pocket" fromLane="1" toLane="1"/>
    <connection from="street" to="street_pocket" fromLane="1" toLane="2"/>
    <connection from="street_pocket" to="out" fromLane="0" toLane="0" via=":J_0_0"/>
    <connection from=":J_0" to="out" fromLane="0" toLane="0"/>
    <connection from="feeder1" to="side" fromLane="0" toLane="0"/>
    <connection from="feeder2" to="side" fromLane="0" toLane="0"/>
    <connection from="side" to="out" fromLane="0" toLane="0"/>
</net>
"""


def test_a_pocket_approach_reaches_back_to_the_street_and_a_junction_stops_it(
    tmp_path: Path,
) -> None:
    net = tmp_path / "n.net.xml"
    net.write_text(NET, encoding="utf-8")
    chains, lanes = upstream_chains(net, ["street_pocket", "side"])
    assert chains == {"street_pocket": ("street",), "side": ()}  # two feeders: a junction
    assert lanes == {"street": ("street_0", "street_1")}
    short, _ = upstream_chains(net, ["street_pocket"], max_length_m=30.0)
    assert short == {"street_pocket": ()}


def test_queues_per_approach_sum_vehicles_and_queue_metres_along_the_approach() -> None:
    wiring = SessionWiring(
        tls_ids=("J", "K"),
        det_ids=(),
        lane_ids=("street_pocket_0", "side_0", "street_pocket_1", "k_in_0"),
        lane_tls=np.array([0, 3, 4], np.int64),
        detector_period_s=30.0,
    )
    app = Approaches.of(wiring, {"street_pocket": ("street",)},
                        {"street": ("street_0", "street_1")})  # fmt: skip
    assert app.ids == ("J/street_pocket", "J/side", "K/k_in")
    assert app.chains == (("street_pocket", "street"), ("side",), ("k_in",))
    assert app.upstream_lane_ids == ("street_0", "street_1")
    # lanes: the 4 signalized ones, then street_0, street_1
    halting = np.array([3.0, 1.0, 5.0, 0.0, 2.0, 0.0])
    length = np.array([5.0, 5.0, 5.0, 0.0, 5.0, 0.0])
    veh, metres = app.queues(halting, length)
    assert veh.tolist() == [10.0, 1.0, 0.0]
    spacing = 5.0 + JAM_GAP_M
    # the longest pocket lane (5 veh) plus the street's longest lane (2 veh) behind it
    assert metres == pytest.approx([7 * spacing, 1 * spacing, 0.0])
