"""fit_signals: a SUMO model's programs kept with the least the guard needs (all-reds,
a permissive turn where two conflicting links are both G, pedestrian clearance), and an
import given only a .sumocfg."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from city_models.importers.sumo_model import read_sumo_model
from city_models.importing import import_city
from city_models.net import read_net
from city_models.plan_check import conflict_matrix
from twin.engine.sumo_tools import run_tool
from twin.errors import CityError

pytestmark = pytest.mark.sumo  # netgenerate / netconvert

GRID = ["--grid", "--grid.number", "3", "--grid.length", "200", "--default.lanenumber", "2",
        "--tls.guess", "true", "--tls.yellow.time", "3"]  # fmt: skip
SIGNALS = {"A1", "B0", "B1", "B2", "C1"}


@pytest.fixture(scope="module")
def no_all_red(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """netconvert's default programs: green, 3-s yellow, straight into the next green."""
    out = tmp_path_factory.mktemp("noar") / "noar.net.xml"
    run_tool("netgenerate", [*GRID, "-o", out], what="making a test grid")
    return out


def test_fit_inserts_an_all_red_after_each_yellow_and_keeps_the_greens(
    no_all_red: Path, tmp_path: Path
) -> None:
    with pytest.raises(CityError, match="fit_signals=True"):
        read_sumo_model(no_all_red, work=tmp_path / "refused")
    before = read_net(no_all_red).tls["B1"]
    src = read_sumo_model(no_all_red, work=tmp_path / "city", fit_signals=True)
    assert src.plans is not None and src.guessed_signals is False
    assert set(src.report["signals_fitted"]) == SIGNALS
    assert all(
        line.startswith("all-red: 1 s after phase")
        for lines in src.report["signals_fitted"].values()
        for line in lines
    )
    b1 = next(p for p in src.plans if p.tls_id == "B1")
    assert [p.kind for p in b1.phases] == ["green", "yellow", "all_red"] * 2
    greens = [p.duration_s for p in b1.phases if p.kind == "green"]
    assert greens == [p.duration_s for p in before.phases if "y" not in p.state and "G" in p.state]
    assert b1.cycle_s == sum(p.duration_s for p in before.phases) + 2.0  # two 1-s all-reds
    assert src.report["min_all_red_s"] == 1.0
    # the net SUMO runs has the fitted program, all-red and all
    after = read_net(src.net_file).tls["B1"]
    assert [p.state for p in after.phases] == [p.state for p in b1.phases]
    all_red = b1.phases[2].state
    assert "y" not in all_red and all_red == b1.phases[1].state.replace("y", "r")


def test_fit_makes_the_link_that_gives_way_permissive(no_all_red: Path, tmp_path: Path) -> None:
    text = no_all_red.read_text(encoding="utf-8")
    tls = read_net(no_all_red).tls["B1"]
    conflicts = conflict_matrix(tls)
    green = tls.phases[0].state
    # a right turn made G that conflicts with a G of the same phase
    right = next(
        k.index for k in tls.links
        if k.direction == "r" and green[k.index] != "G"
        and any(conflicts[k.index][j] and green[j] == "G" for j in range(len(green)))
    )  # fmt: skip
    yellow = tls.phases[1].state
    start = text.index('<tlLogic id="B1"')
    end = text.index("</tlLogic>", start)
    block = text[start:end]
    block = block.replace(f'state="{green}"', f'state="{green[:right]}G{green[right + 1 :]}"', 1)
    block = block.replace(f'state="{yellow}"', f'state="{yellow[:right]}y{yellow[right + 1 :]}"', 1)
    net = tmp_path / "bad.net.xml"
    net.write_text(text[:start] + block + text[end:], encoding="utf-8")
    with pytest.raises(CityError, match="conflicting links both G"):
        read_sumo_model(net, work=tmp_path / "refused")
    src = read_sumo_model(net, work=tmp_path / "city", fit_signals=True)
    fitted = src.report["signals_fitted"]
    changed = [line for lines in fitted.values() for line in lines if line.startswith("permissive")]
    assert changed, fitted
    assert src.plans is not None
    for plan in src.plans:
        tls_now = read_net(src.net_file).tls[plan.tls_id]
        conf = conflict_matrix(tls_now)
        for p in plan.phases:
            hi = [i for i, c in enumerate(p.state) if c == "G"]
            assert not any(conf[a][b] for a in hi for b in hi if a < b), (plan.tls_id, p.state)


def test_import_from_a_sumocfg_alone_names_the_city_after_it(
    no_all_red: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "grid.net.xml").write_bytes(no_all_red.read_bytes())
    (model / "r.rou.xml").write_text(
        '<routes><trip id="t0" depart="0" from="A0A1" to="B1C1"/></routes>', encoding="utf-8"
    )
    cfg = model / "corridor.sumocfg"
    cfg.write_text(
        '<configuration><input><net-file value="grid.net.xml"/>'
        '<route-files value="r.rou.xml"/></input></configuration>',
        encoding="utf-8",
    )
    city = import_city("sumo", sumocfg=cfg, cities_dir=tmp_path / "cities", fit_signals=True)
    assert city.manifest.name == "corridor" and city.path.name.startswith("corridor-")
    report = json.loads((city.path / "import_report.json").read_text(encoding="utf-8"))
    assert set(report["signals_fitted"]) == SIGNALS and report["own_routes"]
    with gzip.open(city.net_path, "rt", encoding="utf-8") as fh:
        assert 'programID="0"' in fh.read()
