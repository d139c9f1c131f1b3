"""Tests of the gravity OD demand model and trip sampling (city_models.demand)."""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree

import networkx as nx
import numpy as np
import pytest

from city_models.build import City
from city_models.demand import (
    PERIODS,
    demand_load,
    lane_km,
    mean_trip_length_m,
    od_matrix,
    sample_trips,
    trips_for_load,
    write_trips,
)
from city_models.features import strongly_connected_edges
from city_models.manifest import DemandModel
from city_models.pipeline import PEAK_LOAD_VKM_PER_LANE_KM
from city_models.presets import get_preset
from twin.errors import ScenarioError


@pytest.fixture(scope="module")
def model(district_city: City) -> DemandModel:
    return district_city.manifest.demand


def _radii(model: DemandModel, city: City) -> np.ndarray:
    xmin, ymin, xmax, ymax = city.net.bbox_xy
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    return np.array([math.hypot(z.x - cx, z.y - cy) for z in model.zones])


@pytest.mark.parametrize("period", list(PERIODS))
def test_od_total_is_peak_times_share(model: DemandModel, period: str) -> None:
    od = od_matrix(model, period)
    n = len(model.zones)
    assert od.shape == (n, n)
    assert np.all(od >= 0)
    expected = model.peak_trips_per_h * float(model.periods[period]["share"])
    assert od.sum() == pytest.approx(expected, rel=1e-9)


def test_peak_total_is_the_preset_peak(model: DemandModel, district_city: City) -> None:
    assert model.peak_trips_per_h == district_city.manifest.params["peak_trips_per_h"]
    assert od_matrix(model, "am_peak").sum() == pytest.approx(model.peak_trips_per_h)


def test_am_peak_flows_towards_the_centre_pm_peak_away(
    model: DemandModel, district_city: City
) -> None:
    r = _radii(model, district_city)

    def inward(period: str) -> float:
        """Trip-weighted mean of (origin radius - destination radius), m."""
        od = od_matrix(model, period)
        return float((od * (r[:, None] - r[None, :])).sum() / od.sum())

    am, pm, midday = inward("am_peak"), inward("pm_peak"), inward("midday")
    assert am > 50.0
    assert pm < -50.0
    assert am > pm
    assert abs(midday) < 1.0  # mixed periods are symmetric


def test_am_peak_attractions_are_central(model: DemandModel, district_city: City) -> None:
    r = _radii(model, district_city)
    central, outer = int(np.argmin(r)), int(np.argmax(r))
    am, pm = od_matrix(model, "am_peak"), od_matrix(model, "pm_peak")
    # share of trips ending in the central zone: higher in the morning
    assert am[:, central].sum() / am.sum() > pm[:, central].sum() / pm.sum()
    assert am[:, outer].sum() / am.sum() < pm[:, outer].sum() / pm.sum()


def test_zones_only_hold_reachable_edges(model: DemandModel, district_city: City) -> None:
    core = strongly_connected_edges(district_city.net)
    for zone in model.zones:
        assert zone.edges
        assert len(zone.edges) == len(zone.edge_weights)
        assert all(w > 0 for w in zone.edge_weights)
        assert set(zone.edges) <= core
        assert not any(e.endswith("_pocket") for e in zone.edges)


def test_sample_trips_is_deterministic(model: DemandModel) -> None:
    a = sample_trips(model, period="am_peak", duration_s=900.0, seed=11)
    b = sample_trips(model, period="am_peak", duration_s=900.0, seed=11)
    c = sample_trips(model, period="am_peak", duration_s=900.0, seed=12)
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("period", "duration_s", "scale"),
    [("am_peak", 3600.0, 1.0), ("night", 1800.0, 1.0), ("pm_peak", 600.0, 2.5)],
)
def test_trip_count_is_near_the_poisson_mean(
    model: DemandModel, period: str, duration_s: float, scale: float
) -> None:
    mean = od_matrix(model, period).sum() * scale * duration_s / 3600.0
    for seed in range(3):
        trips = sample_trips(model, period=period, duration_s=duration_s, seed=seed, scale=scale)
        assert abs(len(trips) - mean) <= 5 * math.sqrt(mean), (seed, len(trips), mean)


def test_departures_are_sorted_within_the_window(model: DemandModel) -> None:
    begin, duration = 7200.0, 900.0
    trips = sample_trips(model, period="midday", duration_s=duration, seed=3, begin_s=begin)
    assert trips
    departs = [t.depart_s for t in trips]
    assert departs == sorted(departs)
    assert all(begin <= d < begin + duration for d in departs)
    assert len({t.id for t in trips}) == len(trips)


def test_trip_edges_exist_and_are_real_trips(model: DemandModel, district_city: City) -> None:
    net = district_city.net
    trips = sample_trips(model, period="am_peak", duration_s=1800.0, seed=5)
    assert trips
    for t in trips:
        assert t.from_edge in net.edges, t
        assert t.to_edge in net.edges, t
        assert t.from_edge != t.to_edge
        assert t.vtype in {"car", "truck"}
    trucks = sum(t.vtype == "truck" for t in trips) / len(trips)
    assert 0.0 < trucks < 0.15


def test_unknown_period_lists_the_allowed_ones(model: DemandModel) -> None:
    for call in (
        lambda: od_matrix(model, "noon"),
        lambda: sample_trips(model, period="noon", duration_s=600.0, seed=1),
    ):
        with pytest.raises(ScenarioError) as info:
            call()
        msg = str(info.value)
        assert "'noon'" in msg
        for period in PERIODS:
            assert period in msg


def test_non_positive_duration_is_refused(model: DemandModel) -> None:
    with pytest.raises(ScenarioError, match="duration_s"):
        sample_trips(model, period="am_peak", duration_s=0.0, seed=1)


def test_write_trips_round_trips(model: DemandModel, tmp_path: Path) -> None:
    trips = sample_trips(model, period="night", duration_s=600.0, seed=2)
    path = write_trips(trips, tmp_path / "t.rou.xml")
    root = ElementTree.parse(path).getroot()
    assert {v.get("id") for v in root.iter("vType")} == {"car", "truck", "ambulance", "fire_truck"}
    emergency = {v.get("id") for v in root.iter("vType") if v.get("vClass") == "emergency"}
    assert emergency == {"ambulance", "fire_truck"}
    written = list(root.iter("trip"))
    assert [w.get("id") for w in written] == [t.id for t in trips]
    for w, t in zip(written, trips, strict=True):
        assert (w.get("from"), w.get("to"), w.get("type")) == (t.from_edge, t.to_edge, t.vtype)
        assert float(w.get("depart", "nan")) == pytest.approx(t.depart_s, abs=0.005)


def _reference_mean_trip_length_m(model: DemandModel, city: City) -> float:
    """Plain networkx: the same sampled trips, each origin edge + shortest street path +
    destination edge."""
    net = city.net
    total = od_matrix(model, "am_peak").sum()
    trips = sample_trips(model, period="am_peak", duration_s=3600.0 * 2000 / total, seed=0)
    graph = nx.DiGraph()
    for e in net.edges.values():
        old = graph.get_edge_data(e.from_node, e.to_node, {"w": math.inf})["w"]
        graph.add_edge(e.from_node, e.to_node, w=min(old, e.length_m))
    lengths = []
    for t in trips:
        a, b = net.edges[t.from_edge], net.edges[t.to_edge]
        try:
            gap = nx.shortest_path_length(graph, a.to_node, b.from_node, weight="w")
        except nx.NetworkXNoPath:
            continue
        lengths.append(a.length_m + gap + b.length_m)
    return float(np.mean(lengths))


def test_mean_trip_length_is_the_driven_length_of_sampled_trips(
    model: DemandModel, district_city: City
) -> None:
    got = mean_trip_length_m(model, district_city.net)
    assert got == pytest.approx(_reference_mean_trip_length_m(model, district_city), rel=1e-9)
    # longer than the straight line between the zones (streets, and the two end edges)
    od = od_matrix(model, "am_peak")
    xy = np.array([(z.x, z.y) for z in model.zones])
    crow = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    assert got > (od * crow).sum() / od.sum()


def test_the_import_default_load_is_the_calibrated_district_peak(
    model: DemandModel, district_city: City
) -> None:
    """PEAK_LOAD_VKM_PER_LANE_KM is what the calibrated district preset puts on its streets
    (the suite's district is the same layout at a lighter peak: the load is linear in it)."""
    net = district_city.net
    km = lane_km(net, strongly_connected_edges(net))
    light = demand_load(model, net, lane_km=km)
    calibrated = light * get_preset("district").peak_trips_per_h / model.peak_trips_per_h
    assert calibrated == pytest.approx(PEAK_LOAD_VKM_PER_LANE_KM, rel=0.01)
    # and trips_for_load gives the preset's peak back (to its rounding)
    trips = trips_for_load(model, net, lane_km=km, load=calibrated)
    assert trips == pytest.approx(get_preset("district").peak_trips_per_h, abs=10)
    with pytest.raises(ValueError, match="load must be > 0"):
        trips_for_load(model, net, lane_km=km, load=0.0)
    with pytest.raises(ValueError, match="lane_km must be > 0"):
        demand_load(model, net, lane_km=0.0)
