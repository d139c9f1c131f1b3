"""Controllers in real SUMO: what SUMO actually shows obeys the safety rules.

Each run records, every simulation step, the state string SUMO shows at every signal
(``trafficlight.getRedYellowGreenState``, read by a step hook), then checks on that
observed timeline: no two conflicting links both priority-green, every green held at
least its minimum (pedestrian minimum included), every yellow exactly 3 s and followed
by the all-red, and no link jumps from green to red without yellow.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest

from city_models.build import City

pytestmark = pytest.mark.sumo

DURATION_S = 600.0


def _observe(city_path: str, run_dir: str, controller: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.baseline import Baseline
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate

    city = load_city(Path(city_path))
    spec = parse_scenario({
        "name": f"obs-{controller}", "kind": "baseline", "seed": 4,
        "demand": {"scale": 1.2}, "sim": {"duration_s": DURATION_S},
        "control": {"default": controller, "adaptive": {"update_s": 30}},
    })  # fmt: skip
    ids = [s.id for s in city.manifest.signals]
    timeline: dict[str, list[tuple[float, str]]] = {t: [] for t in ids}

    class Recorder(Baseline):
        needs_step_hook = True

        def setup(self, ctx: Any) -> None:
            self.get = ctx.session.sumo.trafficlight.getRedYellowGreenState

        def on_step(self, ctx: Any) -> None:
            t = ctx.session.time_s
            for tls in ids:
                timeline[tls].append((t, self.get(tls)))

    result = simulate(spec, city, Recorder(spec), seed=4, run_dir=Path(run_dir))
    return {"timeline": timeline, "metrics": result.metrics,
            "series": {k: len(v) for k, v in result.series.items()}}  # fmt: skip


def _run(city: City, tmp_path: Path, controller: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_observe, (str(city.path), str(tmp_path / controller), controller))


def _intervals(states: list[tuple[float, str]]) -> list[tuple[str, float, float]]:
    """Runs of equal state: (state, start_s, duration_s)."""
    runs: list[tuple[str, float, float]] = []
    for t, s in states:
        if runs and runs[-1][0] == s:
            state, start, _ = runs[-1]
            runs[-1] = (state, start, t - start + 1.0)
        else:
            runs.append((s, t, 1.0))
    return runs


def _check_safety(city: City, timeline: dict[str, list[tuple[float, str]]]) -> int:
    net = city.net
    checked = 0
    for sig in city.manifest.signals:
        foes = net.tls[sig.id].foes
        greens = {p.state: p for p in sig.phases if p.kind == "green"}
        runs = _intervals(timeline[sig.id])
        for k, (state, _start, duration) in enumerate(runs):
            hi = [i for i, ch in enumerate(state) if ch == "G"]
            assert not any(foes[a][b] for a in hi for b in hi), (sig.id, state)
            last = k == len(runs) - 1  # cut by the end of the run
            if state in greens and k > 0 and not last:
                assert duration >= greens[state].min_green_s, (sig.id, state, duration)
                checked += 1
            if "y" in state and not last:
                assert duration == 3.0, (sig.id, state, duration)
                after = runs[k + 1][0]
                for i, ch in enumerate(state):
                    if ch == "y":  # every yellow link goes to red (the all-red) next
                        assert after[i] in "rs", (sig.id, state, after)
            if k > 0:
                prev = runs[k - 1][0]
                for i, (a, b) in enumerate(zip(prev, state, strict=True)):
                    if a in "Gg" and b in "rs":
                        raise AssertionError(f"{sig.id} link {i}: green -> red without yellow")
    return checked


@pytest.mark.parametrize("controller", ["adaptive", "max_pressure", "actuated"])
def test_what_sumo_shows_is_safe(district_city: City, tmp_path: Path, controller: str) -> None:
    out = _run(district_city, tmp_path, controller)
    assert out["metrics"]["throughput_veh"] > 0
    assert out["metrics"]["controllers"][controller] == len(district_city.manifest.signals)
    greens_checked = _check_safety(district_city, out["timeline"])
    assert greens_checked > 100  # the check saw real signal changes
    if controller != "actuated":
        assert out["metrics"]["guard_late_changes"] == 0
    if controller == "adaptive":
        assert out["series"]["signal_timings"] > 0
    if controller in ("adaptive", "max_pressure"):
        assert out["series"]["greens_served"] > 0


def test_unknown_signal_in_by_signal_is_a_clear_error(district_city: City, tmp_path: Path) -> None:
    from scenarios.baseline import Baseline
    from scenarios.loader import parse_scenario
    from twin.app.compose import simulate
    from twin.errors import ScenarioError

    spec = parse_scenario({"name": "x", "kind": "baseline",
                           "control": {"by_signal": {"no_such_signal": "adaptive"}}})  # fmt: skip
    with pytest.raises(ScenarioError, match=r"control\.by_signal.*no_such_signal"):
        simulate(spec, district_city, Baseline(spec), seed=1, run_dir=tmp_path)
