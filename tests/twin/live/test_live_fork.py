"""A what-if fork of the live city: the shadow twin (SUMO at the clock's pace, showing
the field's signal states) saves its present, and the futures run from it with every
signal through the guard -- the commanded one taking over from the interval the field
controller shows -- checked on what SUMO showed in each fork."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City
from city_models.plan_check import all_red_promise_s, conflict_matrix
from signal_control.guard import SignalGuard
from signal_control.port import plan_from_phases
from tests.twin.live.harness import start_center
from twin.app.compose import SIGNAL_STATES_FILE
from twin.app.fork import parse_variants, plan_forks
from twin.app.live.audit import read_records
from twin.app.live.clock import LiveClock
from twin.app.live.follow import live_fork
from twin.app.live.procs import EmulatorProcess
from twin.config import load_settings
from twin.engine.states import read_state
from twin.engine.store import RunStore
from twin.engine.sumo_tools import iter_xml_elements, sumo_version
from twin.errors import ConfigError

SIGNAL = "n7_7"
OTHER = "n5_5"  # not commanded by the center: its plan in SUMO
AHEAD_S = 180.0


def _switches(run_dir: Path, tls: str) -> list[tuple[float, str]]:
    return [
        (float(el["time"]), el["state"])
        for el in iter_xml_elements(run_dir / SIGNAL_STATES_FILE, "tlsState")
        if el["id"] == tls
    ]


@pytest.mark.sumo
@pytest.mark.slow
def test_a_live_fork_starts_from_the_shadow_and_the_field(
    district_city: City, emulator: EmulatorProcess, fast_clock: LiveClock, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "runs")
    variants = parse_variants(
        {"variant": {"adaptive": {"control.default": "adaptive"}}, "places": [SIGNAL]},
        where="test",
    )

    async def run() -> tuple[dict[str, Any], float]:
        center = await start_center(
            district_city, emulator, fast_clock, tmp_path, signals=[SIGNAL], shadow=True,
            workdir=tmp_path / "live", runs=settings,
        )  # fmt: skip
        try:
            svc = center.svc
            assert svc.shadow is not None
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline and not svc.shadow.report.sim_s >= 200.0:
                await asyncio.sleep(0.2)
            assert svc.shadow.report.sim_s >= 200.0, svc.shadow.report
            at_clock = svc.clock.now_s()
            out = await live_fork(svc, variants, ahead_s=AHEAD_S, mode="micro", who="op-key")
            return out, at_clock
        finally:
            await center.svc.stop(hand_back=True)

    out, at_clock = asyncio.run(run())
    assert out["failed"] == [], out
    assert [r["variant"] for r in out["forks"]] == ["as-is", "adaptive"]
    assert all(r["status"] == "done" for r in out["forks"]), out
    for row in out["forks"]:
        assert row["metrics"]["mean_delay_s"] >= 0.0
        assert f"queue_max_veh@{SIGNAL}" in row["metrics"]

    # the state: the shadow's, with what the field showed when it was saved
    state = read_state(Path(out["state"]), sumo_version=sumo_version())
    assert state.meta["source"] == "live_shadow"
    assert state.meta["clock_s"] >= at_clock
    interval, stage, elapsed_s = state.meta["field_intervals"][SIGNAL]
    assert set(state.meta["field_intervals"]) == {SIGNAL}
    sig = next(s for s in district_city.manifest.signals if s.id == SIGNAL)
    plan = plan_from_phases(SIGNAL, sig.phases, offset_s=sig.offset_s,
                            min_all_red_s=all_red_promise_s(district_city.manifest))  # fmt: skip
    assert 0.0 <= elapsed_s <= max(plan.max_green_s) + 10.0
    foes = conflict_matrix(district_city.net.tls[SIGNAL])
    guard = SignalGuard(plan, start_s=state.t_s, foes=foes, stage=stage, elapsed_s=elapsed_s,
                        interval=interval)  # fmt: skip

    store = RunStore(settings.db_url)
    try:
        records = [store.get(r["run_id"]) for r in out["forks"]]
    finally:
        store.close()
    for rec in records:
        assert rec.run_dir is not None and rec.spec["control"]["guard_fixed"] is True
        shown = _switches(rec.run_dir, SIGNAL)
        # SUMO shows the field's interval from the fork's first step (not the state the
        # shadow was last fed, frozen), and the signal keeps switching: its plan runs on
        assert shown[0][0] <= state.t_s + 1.0 and shown[0][1] == guard.state, (shown[:3], guard)
        assert len(shown) >= 3, shown
        assert len(_switches(rec.run_dir, OTHER)) >= 3
    assert records[1].spec["control"]["default"] == "adaptive"

    # audited, with the runs it made
    audit = {r["kind"]: r for r in read_records(tmp_path / "audit.jsonl")}
    assert audit["fork_start"]["by"] == "op-key" and audit["fork_start"]["mode"] == "micro"
    assert audit["fork_done"]["runs"] == [r["run_id"] for r in out["forks"]]

    # a fork of the shadow's state may not leave a signal to SUMO's own program: it would
    # show the field's last state for ever
    bad = parse_variants({"variant": {"plain": {"control.guard_fixed": False}}}, where="test")
    with pytest.raises(ConfigError, match=r"\[variant.plain\]: control.guard_fixed = false"):
        plan_forks(Path(out["state"]), bad, at_s=None, ahead_s=AHEAD_S)
    # nor to SUMO's actuated programs, which would take over without the guard
    own = parse_variants({"variant": {"own": {"control.default": "actuated"}}}, where="test")
    with pytest.raises(ConfigError, match=r"\[variant.own\]: control = 'actuated'"):
        plan_forks(Path(out["state"]), own, at_s=None, ahead_s=AHEAD_S)
