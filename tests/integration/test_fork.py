"""What-if forks with real SUMO on the light district: a fork from a saved state
reproduces its parent bit for bit, a variant really changes the outcome, a state of
another SUMO version or city is refused, the mesoscopic model forks from a micro state,
and ``twin fork`` prints one comparison table."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from city_models.build import City, load_city
from scenarios.loader import load_scenario, parse_scenario
from scenarios.spec import ScenarioSpec
from twin.app.cli import app
from twin.app.compose import build_run, simulate
from twin.app.fork import null_fork_check
from twin.app.sessions import InteractiveSession, session_spec
from twin.app.study import with_overrides
from twin.config import Settings
from twin.engine.states import read_state, sidecar_path
from twin.engine.sumo_tools import sumo_version
from twin.errors import ConfigError, ScenarioError

pytestmark = pytest.mark.sumo

T0_S, AHEAD_S = 300.0, 300.0
SEED = 42


def _spec(*overrides: tuple[str, Any]) -> ScenarioSpec:
    return with_overrides(load_scenario("baseline"), list(overrides), source="test_fork")


def _simulate(spec: ScenarioSpec, city_path: Path, run_dir: Path) -> dict[str, Any]:
    return simulate(spec, load_city(city_path), seed=SEED, run_dir=run_dir).metrics


def _parent_spec(control: str) -> ScenarioSpec:
    return _spec(
        ("control.default", control),
        ("sim.duration_s", T0_S + AHEAD_S),
        ("sim.save_state_at_s", [T0_S, T0_S + AHEAD_S]),
    )


def _fork_spec(parent_dir: Path, *more: tuple[str, Any], control: str = "fixed") -> ScenarioSpec:
    return _spec(
        ("control.default", control),
        ("sim.begin_s", T0_S),
        ("sim.duration_s", AHEAD_S),
        ("sim.load_state", str(parent_dir / "states" / f"state_{T0_S:g}.xml")),
        ("sim.save_state_at_s", [T0_S + AHEAD_S]),
        *more,
    )


@pytest.fixture(scope="module")
def runs(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The district's AM peak, 600 s, saved at 300 s and 600 s, fixed-time and adaptive;
    then from their states at 300 s: the null forks, a max-pressure fork and a meso fork.

    Every run gets a fresh process, as the executors give every run and fork: libsumo
    does not reset all its random number generators between simulations of one process
    (SUMO's ``routeHandler`` stream), so a fork loaded in a process that ran another
    simulation before does not continue its parent exactly."""
    root = tmp_path_factory.mktemp("forks")
    dirs = {name: root / name for name in ("fixed", "adaptive", "null_fixed", "null_adaptive",
                                           "pressure", "meso")}  # fmt: skip
    city = district_city.path
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx, max_tasks_per_child=1) as pool:
        parents = {c: pool.submit(_simulate, _parent_spec(c), city, dirs[c])
                   for c in ("fixed", "adaptive")}  # fmt: skip
        metrics = {c: f.result() for c, f in parents.items()}
        forks = {
            "null_fixed": _fork_spec(dirs["fixed"]),
            "null_adaptive": _fork_spec(dirs["adaptive"], control="adaptive"),
            "pressure": _fork_spec(dirs["fixed"], control="max_pressure"),
            "meso": _fork_spec(dirs["fixed"], ("sim.mode", "meso"), ("sim.save_state_at_s", [])),
        }
        done = {k: pool.submit(_simulate, spec, city, dirs[k]) for k, spec in forks.items()}
        metrics.update({k: f.result() for k, f in done.items()})
    return {"dirs": dirs, "metrics": metrics}


def _assert_identical(check: dict[str, Any], *, window_s: float) -> None:
    """What a null fork must reproduce over its window: every step, switch, kilometre
    and the end state."""
    assert check["steps"] >= window_s - 1
    assert check["steps_differing"] == 0, check
    assert check["signal_switches"][0] > 100
    assert check["signal_switches_differing"] == 0, check
    a_km, b_km = check["distance_driven_km"]
    assert a_km > 100 and a_km == b_km
    assert check["end_state_lines_differing"] == 0, check
    assert check["identical"]


@pytest.mark.parametrize("control", ["fixed", "adaptive"])
def test_null_fork_reproduces_the_parent_bit_for_bit(runs: dict[str, Any], control: str) -> None:
    # adaptive: the controllers continue from their pickle (counts, smoothed timings,
    # the guards), and the loops count the vehicles SUMO's loaded loops do not see
    dirs = runs["dirs"]
    check = null_fork_check(dirs[control], dirs[f"null_{control}"], t0_s=T0_S,
                            t1_s=T0_S + AHEAD_S)  # fmt: skip
    _assert_identical(check, window_s=AHEAD_S)


# A max-pressure parent forked at 350 s. Not at 300 s, where the other parents fork:
# there a car turning left at n3_9 waits at the internal junction for an oncoming car
# already inside the junction, and SUMO 1.28 keeps the junctions' approach records
# (which vehicle will pass which link) in its state only for rail signals. Loaded, the
# oncoming car has no record, counts as "will not pass" (MSLink::getLeaderInfo), the
# left-turner drives on in the first step and the fork departs from its parent at 301 s.
# Nothing of the controllers is missing: with those two records put back into SUMO's
# state file that fork is identical too. The limit is SUMO's and depends on the traffic
# at the save, not on the controller (a parent of any control can meet it).
PRESSURE_T0_S = 350.0


@pytest.fixture(scope="module")
def pressure_runs(district_city: City, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A max-pressure parent (600 s, saved at 350 and 600 s) and its null fork from 350 s,
    each in a fresh process, one after the other."""
    root = tmp_path_factory.mktemp("pressure_forks")
    end_s = T0_S + AHEAD_S
    parent = _spec(
        ("control.default", "max_pressure"),
        ("sim.duration_s", end_s),
        ("sim.save_state_at_s", [PRESSURE_T0_S, end_s]),
    )
    fork = _spec(
        ("control.default", "max_pressure"),
        ("sim.begin_s", PRESSURE_T0_S),
        ("sim.duration_s", end_s - PRESSURE_T0_S),
        ("sim.load_state", str(root / "parent" / "states" / f"state_{PRESSURE_T0_S:g}.xml")),
        ("sim.save_state_at_s", [end_s]),
    )
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
        metrics = {
            name: pool.submit(_simulate, spec, district_city.path, root / name).result()
            for spec, name in ((parent, "parent"), (fork, "null"))
        }
    return {"root": root, "metrics": metrics}


@pytest.mark.slow
def test_a_max_pressure_null_fork_reproduces_the_parent_bit_for_bit(
    pressure_runs: dict[str, Any],
) -> None:
    # the controllers continue from their pickle: the guards (holds, skips and force-offs
    # under way), the policy's networks and hysteresis, the decision ticks
    root, end_s = pressure_runs["root"], T0_S + AHEAD_S
    # its decision count continues from the pickle: the same switches as the parent's
    switches = [pressure_runs["metrics"][k]["max_pressure_switches"] for k in ("parent", "null")]
    assert switches[0] > 0 and switches[1] == switches[0]
    check = null_fork_check(root / "parent", root / "null", t0_s=PRESSURE_T0_S, t1_s=end_s)
    _assert_identical(check, window_s=end_s - PRESSURE_T0_S)


def test_a_variant_changes_the_future(runs: dict[str, Any]) -> None:
    dirs, metrics = runs["dirs"], runs["metrics"]
    check = null_fork_check(dirs["null_fixed"], dirs["pressure"], t0_s=T0_S,
                            t1_s=T0_S + AHEAD_S)  # fmt: skip
    assert not check["identical"]
    assert check["signal_switches_differing"] > 0
    assert metrics["pressure"]["mean_delay_s"] != metrics["null_fixed"]["mean_delay_s"]
    # the controllers took the running plans over mid-run: nothing was cut
    assert metrics["pressure"].get("late_changes", 0) == 0


def _copy_state(parent: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    state = parent / "states" / f"state_{T0_S:g}.xml"
    for f in state.parent.glob(f"state_{T0_S:g}.*"):
        shutil.copy(f, dest / f.name)
    return dest / state.name


def _edit_sidecar(state: Path, **changes: Any) -> None:
    car = sidecar_path(state)
    raw = json.loads(car.read_text(encoding="utf-8"))
    raw.update(changes)
    car.write_text(json.dumps(raw), encoding="utf-8")


def test_a_state_from_another_sumo_version_is_refused(
    district_city: City, runs: dict[str, Any], tmp_path: Path
) -> None:
    state = _copy_state(runs["dirs"]["fixed"], tmp_path / "old")
    _edit_sidecar(state, sumo_version="1.20.0")
    spec = _spec(("sim.begin_s", T0_S), ("sim.duration_s", AHEAD_S),
                 ("sim.load_state", str(state)))  # fmt: skip
    with pytest.raises(ScenarioError) as err:
        build_run(spec, district_city, seed=SEED, run_dir=tmp_path / "run")
    text = str(err.value)
    assert "sim.load_state" in text and "SUMO 1.20.0" in text and f"SUMO {sumo_version()}" in text
    assert "refused" in text


def test_a_state_of_another_city_or_time_is_refused(
    district_city: City, runs: dict[str, Any], tmp_path: Path
) -> None:
    state = _copy_state(runs["dirs"]["fixed"], tmp_path / "other")
    _edit_sidecar(state, city_hash="0" * 64)
    spec = _spec(("sim.begin_s", T0_S), ("sim.duration_s", AHEAD_S),
                 ("sim.load_state", str(state)))  # fmt: skip
    with pytest.raises(ScenarioError, match="same net"):
        build_run(spec, district_city, seed=SEED, run_dir=tmp_path / "run")
    good = runs["dirs"]["fixed"] / "states" / f"state_{T0_S:g}.xml"
    late = _spec(("sim.begin_s", T0_S + 5), ("sim.duration_s", AHEAD_S),
                 ("sim.load_state", str(good)))  # fmt: skip
    with pytest.raises(ScenarioError, match=r"sim.begin_s = 300"):
        build_run(late, district_city, seed=SEED, run_dir=tmp_path / "late")


def test_the_sidecar_keeps_what_a_fork_needs(runs: dict[str, Any]) -> None:
    state = read_state(runs["dirs"]["adaptive"] / "states" / f"state_{T0_S:g}.xml",
                       sumo_version=sumo_version())  # fmt: skip
    assert state.t_s == T0_S and state.mode == "micro" and state.has_control
    assert state.meta["seed"] == SEED and Path(state.meta["routes"][0]).is_file()
    assert state.meta["spec"]["control"]["default"] == "adaptive"
    assert len(state.edits["signal_states"]) == 49  # every guarded signal's shown state
    assert len(state.snapshot["vehicles"]) > 100


def test_a_meso_fork_starts_from_the_micro_state(runs: dict[str, Any]) -> None:
    metrics = runs["metrics"]["meso"]
    running = read_state(runs["dirs"]["fixed"] / "states" / f"state_{T0_S:g}.xml",
                         sumo_version=sumo_version()).snapshot["vehicles"]  # fmt: skip
    assert metrics["fork_vehicles_placed"] >= len(running) > 100
    assert metrics["fork_vehicles_refused"] == 0
    assert metrics["throughput_veh"] > 100


def _invoke(args: Sequence[str], settings: Settings) -> Any:
    runner = CliRunner()
    return runner.invoke(app, [*args, "--data-dir", str(settings.data_dir)],
                         catch_exceptions=False)  # fmt: skip


def test_twin_fork_prints_one_table(
    district_city: City, settings: Settings, tmp_path: Path
) -> None:
    scenario = tmp_path / "parent.toml"
    scenario.write_text(
        'name = "p"\nkind = "baseline"\nseed = 42\n[sim]\nduration_s = 600\n'
        "save_state_at_s = [300]\n",
        encoding="utf-8",
    )
    done = _invoke(["run", str(scenario), "--city", str(district_city.path), "--no-report",
                    "--json"], settings)  # fmt: skip
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.output.strip().splitlines()[-1])["id"]
    variants = tmp_path / "v.toml"
    variants.write_text(
        'places = ["n7_7"]\n[variant.adaptive]\n"control.default" = "adaptive"\n',
        encoding="utf-8",
    )
    res = _invoke(["fork", run_id, "--at", "300", "--ahead", "120", "--variants", str(variants),
                   "--no-report", "--json"], settings)  # fmt: skip
    assert res.exit_code == 0, res.output
    table = json.loads(res.output.strip().splitlines()[-1])
    assert [row["variant"] for row in table["forks"]] == ["as-is", "adaptive"]
    assert all(row["status"] == "done" for row in table["forks"])
    null, adaptive = table["forks"]
    assert null["metrics"]["queue_max_veh@n7_7"] is not None
    assert adaptive["diff"]["mean_delay_s"] is not None
    assert null["diff"]["mean_delay_s"] == 0
    with pytest.raises(ConfigError, match="it saved states at 300 s"):
        _invoke(["fork", run_id, "--at", "310", "--ahead", "120", "--variants", str(variants)],
                settings)  # fmt: skip


def test_a_session_saves_its_state_and_twin_fork_forks_it(
    district_city: City, settings: Settings, tmp_path: Path
) -> None:
    raw = session_spec(load_scenario("baseline").model_dump(mode="json"), "all")
    raw["sim"] = {**raw["sim"], "duration_s": 600}
    spec = parse_scenario(raw, source="test_fork session")
    session = InteractiveSession(spec, district_city, seed=SEED, run_dir=tmp_path / "session")
    try:
        session.advance(120)
        session.command("hold", "n7_7", {"until_s": 150})  # the client's command
        saved = session.save_state()
    finally:
        session.close()
    assert saved["t_s"] == 120
    state = read_state(Path(saved["state"]), sumo_version=sumo_version())
    assert state.has_control and "n7_7" in state.edits["signal_states"]
    variants = tmp_path / "v.toml"
    variants.write_text('[variant.pressure]\n"control.default" = "max_pressure"\n',
                        encoding="utf-8")  # fmt: skip
    res = _invoke(["fork", saved["state"], "--ahead", "60", "--variants", str(variants),
                   "--no-report", "--json"], settings)  # fmt: skip
    assert res.exit_code == 0, res.output
    table = json.loads(res.output.strip().splitlines()[-1])
    assert [r["status"] for r in table["forks"]] == ["done", "done"]
    assert table["at_s"] == 120
