"""The importer of an engineer's own SUMO model (city_models.importers.sumo_model), on
real netgenerate / netconvert networks written by the tests."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from city_models.importers.sumo_model import read_sumo_model, read_sumo_pois
from city_models.manifest import PhaseSpec, SignalSpec
from city_models.net import read_net
from city_models.plan_check import signal_problems
from city_models.signals import SignalPlan
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError

GRID = ["--grid", "--grid.number", "3", "--grid.length", "200", "--default.lanenumber", "2",
        "--tls.guess", "true"]  # fmt: skip
SIGNALS = {"A1", "B0", "B1", "B2", "C1"}
# the grid's crossings span one leg: 2 lanes in + 2 lanes out, 3.2 m each
PED_S = 7.0 + 4 * 3.2 / 1.0


def _netgenerate(out: Path, *extra: str) -> Path:
    run_tool("netgenerate", [*GRID, *extra, "-o", out], what="making a test grid")
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3x3 grid, five signals, programs of green, 3-s yellow, 2-s all-red."""
    folder = tmp_path_factory.mktemp("grid")
    return _netgenerate(folder / "grid.net.xml", "--tls.yellow.time", "3", "--tls.allred.time", "2")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _routes(path: Path, *edges: str) -> Path:
    trips = "\n".join(
        f'  <trip id="t{i}" depart="{i}" from="{a}" to="{b}"/>'
        for i, (a, b) in enumerate(zip(edges[::2], edges[1::2], strict=True))
    )
    return _write(
        path,
        f"<routes>\n  <vType id='car'/>\n{trips}\n"
        '  <vehicle id="v0" depart="0"><route edges="A0A1 A1A2"/></vehicle>\n</routes>\n',
    )


def _spec(plan: SignalPlan) -> SignalSpec:
    return SignalSpec(
        id=plan.tls_id, node=plan.tls_id, x=0, y=0, lon=0, lat=0, cycle_s=plan.cycle_s,
        offset_s=plan.offset_s, road_classes=("local", "local"), approach_edges=[],
        incoming_lanes=[],
        phases=[PhaseSpec(index=i, name=p.name, kind=p.kind, state=p.state,
                          duration_s=p.duration_s, min_green_s=p.min_green_s,
                          ped_min_green_s=p.ped_min_green_s, max_green_s=p.max_green_s)
                for i, p in enumerate(plan.phases)],
    )  # fmt: skip


def test_grid_programs_are_kept_as_plans(grid: Path, tmp_path: Path) -> None:
    routes = _routes(tmp_path / "demand.rou.xml", "A0A1", "B1C1", "C1B1", "B1A1")
    src = read_sumo_model(grid, work=tmp_path / "city", routes=[routes], name="grid")
    assert (src.kind, src.name, src.guessed_signals) == ("sumo", "grid", False)
    assert src.net_file == tmp_path / "city" / "city.net.xml.gz"
    assert src.routes == [tmp_path / "city" / "demand.rou.xml"]
    assert src.routes[0].read_bytes() == routes.read_bytes()
    assert src.source_files == [grid, routes]
    net = read_net(src.net_file)
    assert src.plans is not None
    assert {p.tls_id for p in src.plans} == set(net.tls) == SIGNALS
    for plan in src.plans:
        tls = net.tls[plan.tls_id]
        assert tls.program_id == "0"
        assert [(p.state, p.duration_s) for p in plan.phases] == [
            (q.state, q.duration_s) for q in tls.phases
        ]
        assert [p.kind for p in plan.phases] == ["green", "yellow", "all_red"] * 2
        assert plan.cycle_s == 90.0
        for p in plan.phases:
            if p.kind == "green":  # pedestrian rule: 7 s + 12.8 m at 1 m/s, whole seconds
                assert p.ped_min_green_s == pytest.approx(PED_S)
                assert p.min_green_s == math.ceil(PED_S)
                assert p.max_green_s == max(2 * p.duration_s, 60.0)
            else:
                assert p.min_green_s == p.max_green_s == p.duration_s
        # the plan check every city passes accepts the kept plan
        assert signal_problems(_spec(plan), tls, promise_s=2.0) == []
    report = src.report
    assert report["signals"] == report["signals_kept"] == 5
    assert report["min_green_sources"] == {"minDur": 0, "pedestrian": 10, "default": 0}
    assert report["georeferenced"] is False
    assert report["programs_renamed"] == {}
    assert report["actuated_programs"] == []
    assert report["min_all_red_s"] == 2.0
    assert report["routes"] == ["demand.rou.xml"]
    assert report["unknown_route_edges"] == 0
    # netgenerate's edges: 2 lanes at 50 km/h
    assert set(src.edge_classes) == set(net.edges)
    assert set(src.edge_classes.values()) == {"collector"}


def test_default_min_green_where_no_crossing_and_vehicle_min_bounds(
    grid: Path, tmp_path: Path
) -> None:
    src = read_sumo_model(grid, work=tmp_path, default_min_green_s=25.0, walk_s=2.0)
    assert src.plans is not None
    greens = [p for plan in src.plans for p in plan.phases if p.kind == "green"]
    # 2 s + 12.8 m / 1 m/s = 14.8 s < the 25-s vehicle minimum, which binds
    assert {p.min_green_s for p in greens} == {25.0}
    assert src.report["min_green_sources"] == {"minDur": 0, "pedestrian": 0, "default": 10}


def test_route_files_naming_unknown_edges(grid: Path, tmp_path: Path) -> None:
    some = _routes(tmp_path / "some.rou.xml", "A0A1", "nowhere", "B1C1", "B1A1")
    src = read_sumo_model(grid, work=tmp_path / "a", routes=[some])
    assert src.report["unknown_route_edges"] == 1
    alien = _write(
        tmp_path / "alien.rou.xml",
        '<routes><trip id="t" depart="0" from="x1" to="x2"/>'
        '<vehicle id="v" depart="0"><route edges="x1 x3"/></vehicle></routes>',
    )
    with pytest.raises(CityError, match=r"alien\.rou\.xml names 3 edge\(s\) and none"):
        read_sumo_model(grid, work=tmp_path / "b", routes=[alien])


def test_short_yellow_is_refused_by_signal_and_phase(tmp_path: Path) -> None:
    net = _netgenerate(tmp_path / "y2.net.xml", "--tls.yellow.time", "2", "--tls.allred.time", "2")
    with pytest.raises(CityError) as err:
        read_sumo_model(net, work=tmp_path / "city")
    msg = str(err.value)
    assert "signal B1, phase 1 ('yyyyyrrrrryyyyyrrrrr'): a yellow of 2 s" in msg
    assert "signal C1, phase 4 (" in msg
    assert str(net) in msg and "--redesign-signals" in msg


def test_program_without_all_red_is_refused_or_redesigned(tmp_path: Path) -> None:
    net = _netgenerate(tmp_path / "noar.net.xml", "--tls.yellow.time", "3")
    with pytest.raises(CityError) as err:
        read_sumo_model(net, work=tmp_path / "a")
    msg = str(err.value)
    for sig in SIGNALS:
        assert f"signal {sig}, phase 1 (" in msg and f"signal {sig}, phase 3 (" in msg
    assert "a yellow followed by a green (phase 2), not an all-red of >= 1 s" in msg
    assert "Fix the program in the model" in msg
    src = read_sumo_model(net, work=tmp_path / "b", redesign_signals=True)
    assert src.guessed_signals is True and src.plans is None
    assert src.report["programs_replaced"] == 5 and src.report["signals_kept"] == 0
    assert src.report["signal_problems"] == 10


def test_conflicting_greens_are_refused(grid: Path, tmp_path: Path) -> None:
    text = grid.read_text(encoding="utf-8")
    old = 'state="GGGggrrrrrGGGggrrrrr"'
    assert old in text
    bad = _write(tmp_path / "bad.net.xml", text.replace(old, 'state="GGGggGGGggGGGggrrrrr"', 1))
    with pytest.raises(
        CityError, match=r"signal B1, phase 0 \('GGGggGGGgg.*conflicting links both G"
    ):
        read_sumo_model(bad, work=tmp_path / "city")


B1_ACTUATED = """<additional>
  <tlLogic id="B1" type="actuated" programID="0" offset="5">
    <phase duration="40" minDur="{min1}" maxDur="55" state="GGGggrrrrrGGGggrrrrr"/>
    <phase duration="3" state="yyyyyrrrrryyyyyrrrrr"/>
    <phase duration="2" state="rrrrrrrrrrrrrrrrrrrr"/>
    <phase duration="30" minDur="22" maxDur="50" state="rrrrrGGGggrrrrrGGGgg"/>
    <phase duration="3" state="rrrrryyyyyrrrrryyyyy"/>
    <phase duration="2" state="rrrrrrrrrrrrrrrrrrrr"/>
  </tlLogic>
</additional>
"""


def _actuated(grid: Path, folder: Path, min1: float) -> Path:
    tll = _write(folder / "b1.tll.xml", B1_ACTUATED.format(min1=min1))
    net = folder / "act.net.xml"
    run_tool("netconvert", ["-s", grid, "--tllogic-files", tll, "-o", net], what="test")
    return net


def test_actuated_program_takes_min_dur_and_runs_static(grid: Path, tmp_path: Path) -> None:
    src = read_sumo_model(_actuated(grid, tmp_path, 25), work=tmp_path / "city")
    assert src.plans is not None
    b1 = next(p for p in src.plans if p.tls_id == "B1")
    greens = [p for p in b1.phases if p.kind == "green"]
    assert [(p.duration_s, p.min_green_s, p.max_green_s) for p in greens] == [
        (40.0, 25.0, 55.0),
        (30.0, 22.0, 50.0),
    ]
    assert b1.offset_s == 5.0 and b1.cycle_s == 80.0
    assert src.report["actuated_programs"] == ["B1"]
    assert src.report["min_green_sources"] == {"minDur": 2, "pedestrian": 8, "default": 0}
    with gzip.open(src.net_file, "rt", encoding="utf-8") as fh:
        text = fh.read()
    assert '<tlLogic id="B1" type="static" programID="0" offset="5">' in text


def test_min_dur_below_the_pedestrian_clearance_is_refused(grid: Path, tmp_path: Path) -> None:
    net = _actuated(grid, tmp_path, 5)
    with pytest.raises(CityError, match=r"signal B1, phase 0 .*minDur 5 s is below the pedestrian"):
        read_sumo_model(net, work=tmp_path / "city")


def test_program_ids_are_renamed_to_0(grid: Path, tmp_path: Path) -> None:
    text = grid.read_text(encoding="utf-8").replace('programID="0"', 'programID="day"')
    net = _write(tmp_path / "day.net.xml", text)
    src = read_sumo_model(net, work=tmp_path / "city")
    assert src.report["programs_renamed"] == dict.fromkeys(SIGNALS, "day")
    assert src.plans is not None and len(src.plans) == 5
    assert {t.program_id for t in read_net(src.net_file).tls.values()} == {"0"}


def test_sumocfg_supplies_net_and_routes(grid: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "grid.net.xml").write_bytes(grid.read_bytes())
    _routes(model / "r.rou.xml", "A0A1", "B1C1")
    cfg = _write(
        model / "run.sumocfg",
        '<configuration><input><net-file value="grid.net.xml"/>'
        '<route-files value="r.rou.xml"/></input></configuration>',
    )
    src = read_sumo_model(None, sumocfg=cfg, work=tmp_path / "city")
    assert src.name == "grid"
    assert src.routes == [tmp_path / "city" / "r.rou.xml"]
    assert src.source_files == [model / "grid.net.xml", model / "r.rou.xml", cfg]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, r"missing\.net\.xml does not exist"),
        ("this is not <xml", r"not well-formed XML"),
        ("<routes/>", r"root element is <routes>, not <net>"),
    ],
)
def test_bad_networks_are_refused(tmp_path: Path, content: str | None, expected: str) -> None:
    net = tmp_path / "missing.net.xml"
    if content is not None:
        _write(net, content)
    with pytest.raises(CityError, match=expected):
        read_sumo_model(net, work=tmp_path / "city")


def test_net_that_netconvert_refuses(grid: Path, tmp_path: Path) -> None:
    text = grid.read_text(encoding="utf-8")
    bad = _write(
        tmp_path / "broken.net.xml",
        text.replace('<edge id="A0A1" from="A0" to="A1"', '<edge id="A0A1" from="A0" to="ZZ"'),
    )
    with pytest.raises(CityError) as err:
        read_sumo_model(bad, work=tmp_path / "city")
    msg = str(err.value)
    assert "netconvert refuses the SUMO network" in msg and str(bad) in msg
    assert "to-node 'ZZ' is not known" in msg


def test_bad_route_and_additional_files(grid: Path, tmp_path: Path) -> None:
    broken = _write(tmp_path / "x.rou.xml", "<routes><trip")
    with pytest.raises(CityError, match=r"route file .*x\.rou\.xml cannot be read"):
        read_sumo_model(grid, work=tmp_path / "a", routes=[broken])
    with pytest.raises(CityError, match=r"additional file .*nope\.add\.xml does not exist"):
        read_sumo_model(grid, work=tmp_path / "b", additional=[tmp_path / "nope.add.xml"])


# --------------------------------------------------------------------------- geo + POIs

LON0, LAT0 = 127.0276, 37.4979  # Gangnam, Seoul


@pytest.fixture(scope="module")
def geo_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four nodes given in lon/lat, projected to UTM by netconvert; typed edges."""
    folder = tmp_path_factory.mktemp("geo")
    nodes = _write(
        folder / "n.nod.xml",
        f"""<nodes>
  <node id="a" x="{LON0}" y="{LAT0}"/>
  <node id="b" x="{LON0 + 0.004}" y="{LAT0}"/>
  <node id="c" x="{LON0 + 0.008}" y="{LAT0}"/>
  <node id="d" x="{LON0 + 0.004}" y="{LAT0 + 0.004}"/>
</nodes>
""",
    )
    edges = _write(
        folder / "e.edg.xml",
        """<edges>
  <edge id="ab" from="a" to="b" type="highway.primary"/>
  <edge id="bc" from="b" to="c" type="highway.residential"/>
  <edge id="bd" from="b" to="d" numLanes="3" speed="11.1"/>
  <edge id="db" from="d" to="b" numLanes="1" speed="8.3"/>
</edges>
""",
    )
    types = _write(
        folder / "t.typ.xml",
        """<types>
  <type id="highway.primary" numLanes="2" speed="16.67"/>
  <type id="highway.residential" numLanes="1" speed="8.33"/>
</types>
""",
    )
    net = folder / "geo.net.xml"
    run_tool(
        "netconvert",
        ["--node-files", nodes, "--edge-files", edges, "--type-files", types, "--proj.utm",
         "-o", net],
        what="making a test net",
    )  # fmt: skip
    return net


def _poi_file(path: Path, net: Path) -> Path:
    bx, by = read_net(net).nodes_xy["b"]
    return _write(
        path,
        f"""<additional>
  <poi id="h1" type="hospital" x="{bx}" y="{by}" name="Gangnam Severance">
    <param key="emergency" value="yes"/>
  </poi>
  <poi id="f1" type="building" lon="{LON0 + 0.008}" lat="{LAT0}">
    <param key="amenity" value="fire_station"/>
  </poi>
  <poi id="s1" type="amenity.shelter" x="{bx}" y="{by}"/>
  <poi id="c1" type="cafe" x="{bx}" y="{by}"/>
</additional>
""",
    )


def test_pois_become_candidates_with_lon_lat(geo_net: Path, tmp_path: Path) -> None:
    pois = {
        p.id: p for p in read_sumo_pois(_poi_file(tmp_path / "p.add.xml", geo_net), net=geo_net)
    }
    assert set(pois) == {"h1", "f1", "s1"}
    h1 = pois["h1"]
    assert (h1.kind, h1.name, h1.preferred) == ("hospital", "Gangnam Severance", True)
    assert h1.lon == pytest.approx(LON0 + 0.004, abs=1e-6)
    assert h1.lat == pytest.approx(LAT0, abs=1e-6)
    assert pois["f1"].kind == "fire_station"
    assert pois["f1"].lon == pytest.approx(LON0 + 0.008)
    assert pois["s1"].kind == "shelter"


def test_georeferenced_model_with_pois_and_road_classes(geo_net: Path, tmp_path: Path) -> None:
    poi = _poi_file(tmp_path / "p.add.xml", geo_net)
    src = read_sumo_model(geo_net, work=tmp_path / "city", additional=[poi])
    assert src.report["georeferenced"] is True
    assert src.report["signals"] == 0
    assert src.additional == [tmp_path / "city" / "p.add.xml"]
    assert sorted(p.id for p in src.pois) == ["f1", "h1", "s1"]
    assert src.edge_classes == {
        "ab": "arterial",  # highway.primary
        "bc": "local",  # highway.residential
        "bd": "arterial",  # 3 lanes
        "db": "local",  # 1 lane, 30 km/h
    }


def test_pois_in_xy_on_a_net_without_geo_reference_are_skipped(grid: Path, tmp_path: Path) -> None:
    poi = _write(
        tmp_path / "p.add.xml",
        '<additional><poi id="h" type="hospital" x="10" y="10"/>'
        f'<poi id="g" type="hospital" lon="{LON0}" lat="{LAT0}"/></additional>',
    )
    src = read_sumo_model(grid, work=tmp_path / "city", additional=[poi])
    assert [p.id for p in src.pois] == ["g"]
    assert src.report["pois_without_geo"] == 1


def test_signal_programs_in_additional_files_are_refused(grid: Path, tmp_path: Path) -> None:
    add = _write(tmp_path / "tls.add.xml", B1_ACTUATED.format(min1=25))
    with pytest.raises(CityError, match=r"tls\.add\.xml: tlLogic 'B1' \(program '0'\)"):
        read_sumo_model(grid, work=tmp_path / "city", additional=[add])
