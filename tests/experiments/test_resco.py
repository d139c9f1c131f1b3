"""experiments.resco without SUMO: RESCO's metric from a tripinfo, finding the scenarios
in sumo-rl, and the error when the [benchmarks] extra is missing."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from city_models.build import City
from experiments import resco
from scenarios.loader import parse_scenario
from twin.errors import ConfigError

TRIPINFO = """<?xml version="1.0" encoding="UTF-8"?>
<tripinfos>
    <tripinfo id="a" depart="25200.00" departDelay="2.00" arrival="25300.00" duration="100.00"
              routeLength="900.00" waitingTime="10.00" waitingCount="1" timeLoss="20.00"/>
    <tripinfo id="b" depart="25210.00" departDelay="0.00" arrival="25290.00" duration="80.00"
              routeLength="800.00" waitingTime="0.00" waitingCount="0" timeLoss="10.00"/>
    <tripinfo id="c" depart="25400.00" departDelay="6.00" arrival="-1.00" duration="-1.00"
              routeLength="-1.00" waitingTime="30.00" waitingCount="2" timeLoss="42.00"/>
    <tripinfo id="d" depart="25500.00" arrival="-1.00" duration="-1.00" routeLength="-1.00"
              waitingTime="0.00" waitingCount="0" timeLoss="-1"/>
</tripinfos>
"""


def test_resco_delay_is_time_loss_plus_depart_delay_per_vehicle(tmp_path: Path) -> None:
    path = tmp_path / "tripinfo.xml"
    path.write_text(TRIPINFO, encoding="utf-8")
    out = resco.resco_delay(path)
    # a: 20 + 2, b: 10 + 0, c (still driving): 42 + 6; d: timeLoss not available
    assert out["resco_delay_s"] == pytest.approx((22 + 10 + 48) / 3)
    assert out["resco_delay_arrived_s"] == pytest.approx((22 + 10) / 2)
    assert (out["vehicles"], out["arrived"], out["unfinished"]) == (3, 2, 1)


def test_resco_delay_of_an_empty_tripinfo_is_nan(tmp_path: Path) -> None:
    path = tmp_path / "tripinfo.xml"
    path.write_text("<tripinfos/>", encoding="utf-8")
    out = resco.resco_delay(path)
    assert math.isnan(float(out["resco_delay_s"])) and out["vehicles"] == 0


def test_missing_sumo_rl_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sumo_rl" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"sumo-rl==1\.4\.5.*pip install -e '\.\[benchmarks\]'"):
        resco.resco_root()
    assert resco.main(["--quick"]) == 2


def test_the_window_and_files_come_from_the_sumocfg(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.sumocfg").write_text(
        '<configuration><input><net-file value="toy.net.xml"/>'
        '<route-files value="a.rou.xml,b.rou.xml"/></input>'
        '<time><begin value="57600"/><end value="61200"/></time></configuration>',
        encoding="utf-8",
    )
    sc = resco.resco_scenario("toy", tmp_path)
    assert (sc.begin_s, sc.end_s) == (57600.0, 61200.0)
    assert sc.net == folder / "toy.net.xml"
    assert sc.routes == (folder / "a.rou.xml", folder / "b.rou.xml")
    with pytest.raises(ConfigError, match=r"no scenario 'nope'.*known: toy"):
        resco.resco_scenario("nope", tmp_path)
    (folder / "toy.sumocfg").write_text("<configuration/>", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not set net-file, route-files, begin, end"):
        resco.resco_scenario("toy", tmp_path)


def test_summary_keys_and_gap_to_the_published_figures() -> None:
    rows = {
        (name, ctl, seed): {"resco_delay_s": base + seed, "run_id": f"{name}-{ctl}-{seed}"}
        for name, base in (("cologne8", 60.0), ("ingolstadt7", 90.0))
        for ctl in resco.CONTROLLERS
        for seed in (1, 2)
    }
    plain = {("cologne8", 1): {"resco_delay_s": 50.0}, ("cologne8", 2): {"resco_delay_s": 52.0}}
    out = resco.summarise(rows, plain)
    assert set(out["cologne8"]) == set(resco.CONTROLLERS) == set(out["ingolstadt7"])
    shipped = out["shipped_fixed_plain_sumo"]
    assert set(shipped) == {"cologne8"} and shipped["cologne8"]["resco_delay_s"] == 51.0
    assert shipped["cologne8"]["fit_cost_pct"] == pytest.approx(100 * 10.5 / 51, abs=0.05)
    assert shipped["cologne8"]["gap_vs_published_pct"] == pytest.approx(-20.3, abs=0.05)
    assert out["cologne8"]["fixed"] == 61.5
    assert out["gap_vs_published_pct"]["cologne8"]["fixed"] == pytest.approx(-3.9, abs=0.05)
    assert out["details"]["ingolstadt7"]["adaptive"]["seeds"] == [1, 2]
    assert out["published"]["ingolstadt7"]["best_rl"] == 31.0


@pytest.mark.skipif(
    importlib.util.find_spec("sumo_rl") is None,
    reason="sumo-rl (the [benchmarks] extra) is not installed: pip install -e '.[benchmarks]'",
)
def test_resco_scenarios_are_found_in_sumo_rl() -> None:
    for name, begin in (("cologne8", 25200.0), ("ingolstadt7", 57600.0)):
        sc = resco.resco_scenario(name)
        assert (sc.begin_s, sc.end_s) == (begin, begin + 3600.0)
        assert sc.net.is_file() and all(p.is_file() for p in sc.routes)
        package = importlib.util.find_spec("sumo_rl")
        assert package is not None and package.submodule_search_locations
        assert Path(package.submodule_search_locations[0]) in sc.net.parents  # not copied


def test_every_controller_is_a_valid_scenario(district_city: City) -> None:
    """Each controller's scenario parses, and the variants carry their settings (the
    gap-out adaptive runs as experiments.controllers tuned it)."""
    sc = resco.RescoScenario("toy", Path("toy.sumocfg"), Path("toy.net.xml"), (), 100.0, 400.0)
    specs = {
        ctl: parse_scenario(resco.scenario_raw(sc, district_city, ctl, 1))
        for ctl in resco.CONTROLLERS
    }
    assert {ctl: s.control.default for ctl, s in specs.items()} == {
        "fixed": "fixed", "max_pressure": "max_pressure", "adaptive": "adaptive",
        "actuated": "actuated", "adaptive_actuated": "adaptive",
    }  # fmt: skip
    gap = specs["adaptive_actuated"].control.adaptive
    assert (gap.actuation, gap.gap_loops, gap.green_headroom) == ("gap_out", "advance", 4.0)
    assert specs["adaptive"].control.adaptive.actuation == "none"
    assert specs["fixed"].sim.duration_s == 300.0 and specs["fixed"].sim.begin_s == 100.0
