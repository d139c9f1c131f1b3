"""The SUMO session against real SUMO: slices, arrays, state files, both backends.

Each test runs its simulation in a fresh spawned process (libsumo: one per process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from city_models.build import City
from tests import spawned

pytestmark = pytest.mark.sumo


def _spec(duration_s: float = 300.0, backend: str = "libsumo") -> Any:
    from scenarios.loader import parse_scenario

    return parse_scenario({
        "name": "session", "kind": "baseline", "seed": 3,
        "sim": {"duration_s": duration_s, "backend": backend, "series_interval_s": 60},
    })  # fmt: skip


def _in_process(fn: Any, *args: Any) -> Any:
    return spawned.in_process(fn, *args)


def _slices_and_state(city_path: str, run_dir: str) -> dict[str, Any]:
    from city_models.build import load_city
    from twin.app.compose import make_session, session_config

    city = load_city(Path(city_path))
    cfg = session_config(_spec(), city, seed=3, run_dir=Path(run_dir))
    out: dict[str, Any] = {}
    with make_session(cfg, city, backend="libsumo") as session:
        steps: list[float] = []
        session.run(20.0, step_hook=lambda s: steps.append(s.time_s))
        out["hook_times"] = steps
        session.run(120.0)
        out["t_after_slice"] = session.time_s
        out["read_new"] = session.read_detectors()
        out["read_again"] = session.read_detectors()
        out["det_counts"] = session.state.det_count_veh.copy()
        out["interval_end"] = session.state.det_interval_end_s
        session.read_signals()
        out["phases"] = session.state.tls_phase.copy()
        session.read_queues()
        state_file = session.save_state(Path(run_dir) / "t120.xml.gz")
        session.run(200.0)
        out["running_200"] = session.counts()["running"]
        session.load_state(state_file)
        out["t_after_load"] = session.time_s
        session.run(200.0)
        out["running_200_again"] = session.counts()["running"]
    return out


def test_slices_hooks_arrays_and_state(district_city: City, tmp_path: Path) -> None:
    out = _in_process(_slices_and_state, str(district_city.path), str(tmp_path))
    assert out["hook_times"] == [float(t) for t in range(1, 21)]
    assert out["t_after_slice"] == 120.0
    assert out["read_new"] is True and out["read_again"] is False
    assert out["interval_end"] == 120.0
    counts = out["det_counts"]
    assert counts.shape == (len(district_city.manifest.detectors),)
    assert np.all(counts >= 0) and counts.sum() > 0  # traffic crossed the loops
    n_phases = np.array([len(s.phases) for s in district_city.manifest.signals])
    assert np.all((out["phases"] >= 0) & (out["phases"] < n_phases))
    assert out["t_after_load"] == 120.0
    assert out["running_200"] == out["running_200_again"]  # state restores RNG too


def _run_backend(city_path: str, run_dir: str, backend: str) -> dict[str, Any]:
    from city_models.build import load_city
    from scenarios.baseline import Baseline
    from twin.app.compose import simulate

    spec = _spec(duration_s=300.0, backend=backend)
    city = load_city(Path(city_path))
    result = simulate(spec, city, Baseline(spec), seed=3, run_dir=Path(run_dir))
    return result.metrics


def test_libsumo_and_traci_agree(district_city: City, tmp_path: Path) -> None:
    a = _in_process(_run_backend, str(district_city.path), str(tmp_path / "lib"), "libsumo")
    b = _in_process(_run_backend, str(district_city.path), str(tmp_path / "traci"), "traci")
    assert a["throughput_veh"] > 0
    assert a == b


def _two_sessions(city_path: str, run_dir: str) -> str:
    from city_models.build import load_city
    from twin.app.compose import make_session, session_config
    from twin.errors import SumoError

    city = load_city(Path(city_path))
    cfg = session_config(_spec(), city, seed=3, run_dir=Path(run_dir))
    with make_session(cfg, city, backend="libsumo"):
        try:
            make_session(cfg, city, backend="libsumo").start()
        except SumoError as exc:
            return str(exc)
    return "no error"


def test_second_libsumo_session_in_one_process_is_refused(district_city: City,
                                                          tmp_path: Path) -> None:  # fmt: skip
    message = _in_process(_two_sessions, str(district_city.path), str(tmp_path))
    assert "one per process" in message
