"""Safety before the field (issue 10), end to end with real SUMO and real cities.

- Unsafe plans are refused when the city loads, as one :class:`CityError` naming the
  city, each signal, stage and rule, before SUMO starts (findings 1, 3 and 6); the guard
  refuses a conflicting plan even when the load check is bypassed (finding 1).
- Handing every signal back to its local program in the middle of an adaptive run
  never cuts an interval on SUMO's own record, judged by the independent monitor
  (``tests/mmu.py``), and the controllers stop commanding the released signals
  (finding 2, the audit's scenario).

:func:`monitored_run` is the harness: a scenario run in its own process with SUMO
recording every signal state, optionally with a hand-back of every guarded signal.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City, load_city
from city_models.manifest import MANIFEST_NAME, read_manifest
from tests import mmu, spawned
from twin.errors import CityError

pytestmark = pytest.mark.sumo


# --------------------------------------------------------------------------- the harness


def monitored_run(
    city_path: str, run_dir: str, raw: dict[str, Any], hand_back_at_s: float | None = None
) -> dict[str, Any]:
    """Run the scenario ``raw`` with SUMO recording every signal; with ``hand_back_at_s``
    every guarded signal is handed back to its local plan at the first control tick at or
    after it. Runs in a fresh process (libsumo: one simulation per process)."""
    from scenarios.loader import parse_scenario
    from scenarios.registry import make_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario(raw)
    scenario = make_scenario(spec)
    seen: dict[str, Any] = {}
    setup, on_interval = scenario.setup, scenario.on_interval

    def setup_and_note(ctx: Any) -> None:
        seen["run_city"] = str(ctx.city.path)
        setup(ctx)

    def hand_back(ctx: Any) -> None:
        on_interval(ctx)
        due = hand_back_at_s is not None and ctx.session.time_s >= hand_back_at_s
        if due and "handed_back_at" not in seen:
            seen["handed_back_at"] = ctx.session.time_s
            seen["guarded"] = list(ctx.control.guarded)
            for tls in ctx.control.guarded:  # as the audit did: straight to the port
                ctx.control.port.local_mode(tls, "plan")

    scenario.setup = setup_and_note  # type: ignore[method-assign]
    scenario.on_interval = hand_back  # type: ignore[method-assign]
    recorder, record = mmu.recorder_for(city, Path(run_dir))
    result = simulate(spec, city, scenario, seed=spec.seed, run_dir=Path(run_dir),
                      extra_additional=(recorder,))  # fmt: skip
    guard_events = [e for e in result.events if e["kind"].startswith("guard_hand")]
    return {"metrics": result.metrics, "record": str(record), "guard_events": guard_events,
            **seen}  # fmt: skip


def in_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    out: dict[str, Any] = spawned.in_process(fn, *args)
    return out


def programs_at_end(record: Path) -> dict[str, str]:
    """The program each signal ran at the last step of SUMO's record."""
    out: dict[str, str] = {}
    for _event, el in ET.iterparse(record, events=("end",)):
        if el.tag == "tlsState":
            out[el.attrib["id"]] = el.attrib["programID"]
            el.clear()
    return out


def tampered(city: City, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``city`` whose manifest ``edit`` changed (the net is left alone)."""
    shutil.copytree(city.path, folder, ignore=shutil.ignore_patterns("variants"))
    path = folder / MANIFEST_NAME
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    return folder


def _phase(raw: dict[str, Any], signal: int, name: str) -> dict[str, Any]:
    return next(p for p in raw["signals"][signal]["phases"] if p["name"] == name)


def conflicting_left(raw: dict[str, Any]) -> None:
    """The audit's city: the "NS left" stage of the first signal also gives EW through G."""
    left, ew = _phase(raw, 0, "NS left"), _phase(raw, 0, "EW through")
    left["state"] = "".join("G" if b == "G" else a for a, b in zip(left["state"], ew["state"],
                                                                    strict=True))  # fmt: skip


def lowered_ped_minimums(raw: dict[str, Any]) -> None:
    """The audit's city: min green 5 s on every stage that serves a crossing."""
    for sig in raw["signals"]:
        for p in sig["phases"]:
            if p["kind"] == "green" and p["ped_min_green_s"] > 0:
                p["min_green_s"] = 5.0


def _every(kind: str, field: str, value: float) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        for p in raw["signals"][0]["phases"]:
            if p["kind"] == kind:
                p[field] = value

    return edit


def _short_state(raw: dict[str, Any]) -> None:
    p = raw["signals"][0]["phases"][0]
    p["state"] = p["state"][:-1]


BAD_PLANS: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    # finding 6 of issue 10: each failed after the run started, as "Unexpected ..."
    "yellow-1s": (_every("yellow", "duration_s", 1.0),
                  ["phase 1 'NS through yellow'", "yellow of 1 s", "[rule yellow]"]),
    "min-green-0": (_every("green", "min_green_s", 0.0),
                    ["stage 0 'NS through' (phase 0)", "min green 0 s", "[rule min_green]"]),
    "all-red-0.5s": (_every("all_red", "duration_s", 0.5),
                     ["phase 2 'NS through all-red'", "all-red of 0.5 s", "[rule all_red]"]),
    "state-1-short": (_short_state,
                      ["stage 0 'NS through' (phase 0)", "has 17 characters; the signal has "
                       "18 links", "[rule state]"]),
}  # fmt: skip


# --------------------------------------------------------------------------- load


def test_a_conflicting_green_is_refused_at_load(district_city: City, tmp_path: Path) -> None:
    """Finding 1: a city.json whose "NS left" stage also gives EW through G was accepted
    and SUMO showed conflicting greens for 63 steps."""
    folder = tampered(district_city, tmp_path / "conflict", conflicting_left)
    with pytest.raises(CityError) as info:
        load_city(folder)
    msg = str(info.value)
    first = district_city.manifest.signals[0].id
    assert f"City {district_city.name} ({folder}) is refused" in msg
    assert f"signal {first}, stage 1 'NS left' (phase 3): conflicting links both G" in msg
    assert "[rule conflict]" in msg and "[rule program]" in msg


def test_the_guard_refuses_a_conflicting_plan_when_the_load_check_is_bypassed(
    district_city: City, tmp_path: Path
) -> None:
    """Finding 1: without foes the guard skipped the conflict test. A city made without
    load_city still reaches the guard only with its conflict matrices, and is refused."""
    from city_models.plan_check import all_red_promise_s, conflict_matrix
    from scenarios.loader import parse_scenario
    from signal_control.control import ControlManager
    from signal_control.guard import UnsafePlanError
    from twin.app.compose import simulate

    folder = tampered(district_city, tmp_path / "conflict", conflicting_left)
    city = City(path=folder, manifest=read_manifest(folder / MANIFEST_NAME))  # no check
    spec = parse_scenario({"name": "x", "kind": "baseline", "control": {"default": "adaptive"}})
    run_dir = tmp_path / "run"
    with pytest.raises(CityError, match=r"\[rule conflict\]"):
        simulate(spec, city, seed=1, run_dir=run_dir)
    assert not (run_dir / "sumo_args.json").exists()  # refused before SUMO was set up

    net = city.net
    ids = [s.id for s in city.manifest.signals]
    manager = ControlManager(
        signals=city.manifest.signals, links={t: net.tls[t].links for t in ids},
        edge_lanes={e.id: e.lanes for e in net.edges.values()},
        detectors=city.manifest.detectors, assignment=dict.fromkeys(ids, "adaptive"),
        spec=spec.control, detector_period_s=city.manifest.detector_period_s,
        control_interval_s=5.0, foes={t: conflict_matrix(net.tls[t]) for t in ids},
        all_red_promise_s=all_red_promise_s(city.manifest),
    )  # fmt: skip

    class Display:
        time_s = 0.0

        def set_signal_state(self, tls_id: str, state: str) -> None: ...

        def set_program(self, tls_id: str, program_id: str) -> None: ...

        def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None: ...

    with pytest.raises(UnsafePlanError, match=f"{ids[0]}: stage 1 gives conflicting links"):
        manager.start(Display(), t_s=0.0)


def test_pedestrian_minimums_and_the_nets_program_are_checked_at_load(
    district_city: City, tmp_path: Path
) -> None:
    """Finding 3: min greens lowered to 5 s on the pedestrian stages were accepted (SUMO
    showed 227 greens shorter than their pedestrian minimum), and a manifest yellow of
    1 s was never compared with the net's program."""
    folder = tampered(district_city, tmp_path / "ped", lowered_ped_minimums)
    with pytest.raises(CityError) as info:
        load_city(folder)
    msg = str(info.value)
    ped_stages = sum(1 for s in district_city.manifest.signals for p in s.phases
                     if p.kind == "green" and p.ped_min_green_s > 0)  # fmt: skip
    assert ped_stages == 98
    assert msg.count("[rule ped_min_green]") == min(ped_stages, 60)  # the first 60 listed
    assert f"{ped_stages} problem(s)" in msg and "... and 38 more" in msg
    assert "min green 5 s is below the pedestrian minimum" in msg

    folder = tampered(district_city, tmp_path / "yellow", _every("yellow", "duration_s", 1.0))
    with pytest.raises(CityError, match=r"net's program '0' says 'srr.*' for 3 s \[rule program\]"):
        load_city(folder)


def test_bad_plans_fail_fast_as_city_errors(district_city: City, tmp_path: Path) -> None:
    """Finding 6: a yellow of 1 s, a min green of 0, an all-red of 0.5 s or a state one
    character short failed after the run started ("Unexpected UnsafePlanError",
    "Unexpected IndexError"). Now each run is recorded failed with a CityError naming the
    city, the signal, the stage and the rule, and SUMO never starts."""
    from scenarios.loader import parse_scenario
    from twin.app.compose import execute_request, run_request
    from twin.config import load_settings
    from twin.engine.executors import run_requests

    settings = load_settings(data_dir=tmp_path / "data", db_url=None)
    spec = parse_scenario({"name": "bad", "kind": "baseline", "sim": {"duration_s": 600},
                           "control": {"default": "adaptive"}})  # fmt: skip
    first = district_city.manifest.signals[0].id
    requests = []
    for name, (edit, _needles) in BAD_PLANS.items():
        folder = tampered(district_city, tmp_path / name, edit)
        city = City(path=folder, manifest=read_manifest(folder / MANIFEST_NAME))
        requests.append(run_request(spec, city, seed=1))
    records = run_requests(settings, execute_request, requests, workers=2)
    for (name, (_edit, needles)), record in zip(BAD_PLANS.items(), records, strict=True):
        assert record.status == "failed", name
        error = record.error or ""
        assert "Unexpected" not in error, (name, error)
        assert f"City {district_city.name} ({tmp_path / name}) is refused" in error, name
        for needle in [f"signal {first}, ", *needles]:
            assert needle in error, (name, needle, error)
        assert record.run_dir is not None
        assert not (record.run_dir / "sumo_args.json").exists(), name  # SUMO never started


# --------------------------------------------------------------------------- hand-back


def test_handing_every_signal_back_mid_adaptive_never_cuts_an_interval(
    district_city: City, tmp_path: Path
) -> None:
    """Finding 2, the audit's scenario: all 49 signals handed back at t = 300 s under
    adaptive control. Before: in the next 60 s 198 green -> red without yellow, 16
    one-second yellows, 44 short clearances, 10 short greens, then a crash (the adaptive
    controller kept commanding the released signals). Now SUMO's record is clean."""
    raw = {"name": "handback", "kind": "baseline", "seed": 4, "demand": {"scale": 1.2},
           "sim": {"duration_s": 900.0}, "control": {"default": "adaptive"}}  # fmt: skip
    out = in_process(monitored_run, str(district_city.path), str(tmp_path / "run"), raw, 300.0)
    ids = {s.id for s in district_city.manifest.signals}
    assert out["handed_back_at"] == 300.0 and set(out["guarded"]) == ids
    released = {e["tls_id"]: e for e in out["guard_events"] if e["kind"] == "guard_handed_back"}
    assert set(released) == ids  # every signal was released, none left waiting
    assert all(300.0 <= e["t_s"] <= 600.0 for e in released.values())
    assert out["metrics"]["guard_late_changes"] == 0
    record = Path(out["record"])
    assert set(programs_at_end(record).values()) == {"0"}  # the local plan runs them all
    report = mmu.check_city_record(record, district_city)
    report.assert_clean(min_greens=500, min_yellows=1000)
    assert report.counts.signal_steps == len(ids) * 900
