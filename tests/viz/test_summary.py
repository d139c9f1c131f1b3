"""Tests for viz.summary.write_summary: scenario-aware panels, grouped metrics with units,
nested metrics as tables, the spec in the report, captions and the PNG's size."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from city_models.net import EdgeInfo, NetInfo, TlsInfo
from viz.metric_tables import unit
from viz.panels import RunData, holds, panels_for
from viz.summary import SummaryFiles, _draw, png_size_px, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NETWORK_TITLES = (
    "Vehicles in the network",
    "Mean speed (network)",
    "Halting vehicles (whole network)",
    "Top 15 intersections by max queue",
)
EV_TITLES = ("EV route map", "EV speed/time profile", "EV priority requests and holds")
VMS_TITLES = (
    "Incident window and queue at the scene",
    "Signs and their messages over time",
    "Diverted share",
    "Signs and the incident on the network",
)
EVAC_TITLES = (
    "Clearance curves",
    "Shelter occupancy over time",
    "Evacuation zone, shelters and contraflow",
)
ADAPTIVE_TITLE = "Cycle length over time (busiest signals)"


# ---------------------------------------------------------------------- builders
def _run(**overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": "run-7f3a9c",
        "status": "done",
        "scenario_name": "am_peak",
        "scenario_kind": "baseline",
        "spec": {
            "name": "am_peak",
            "kind": "baseline",
            "seed": 42,
            "control": {"default": "fixed", "by_signal": {}},
        },
        "city_name": "Testville",
        "city_hash": "abcdef0123456789deadbeef",
        "seed": 42,
        "created_at": "2025-01-01T08:00:00",
        "finished_at": "2025-01-01T08:05:00",
        "versions": {"sumo": "1.28.0", "citytwin": "0.1.0"},
        "error": None,
        "run_dir": None,
        "series_files": [],
        "metrics": {
            "mean_travel_time_s": 312.4567,
            "throughput_veh": 12345,
            "mean_speed_mps": 8.5,
            "total_delay_h": 56.2,
            "mean_route_length_m": 1841.8,
            "max_queue_veh": 10.0,
            "guard_commands": 53,
            "max_queue_by_tls_veh": {f"J{i}": float(i) for i in range(500)},
            "sim_end_s": 3600.0,
        },
    }
    run.update(overrides)
    return run


def _series() -> pd.DataFrame:
    t = np.arange(0, 3600, 60, dtype=float)
    return pd.DataFrame(
        {
            "t_s": t,
            "vehicles_running": 100 + 50 * np.sin(t / 600),
            "vehicles_arrived": np.cumsum(np.full(t.size, 20)),
            "mean_speed_mps": 10 - 3 * np.sin(t / 900),
            "vehicles_halting": 20 + 10 * np.cos(t / 700),
        }
    )


def _queues() -> pd.DataFrame:
    rows = [
        {"t_s": float(t), "tls_id": f"J{k}", "queue_veh": float(k if k != 3 else 50)}
        for t in range(0, 3600, 300)
        for k in range(6)
    ]
    return pd.DataFrame(rows)


def _tls(tid: str, x: float, y: float) -> TlsInfo:
    return TlsInfo(
        id=tid, node=tid, x=x, y=y, links=(), foes=(), yields=(), phases=(), program_id="0"
    )


def _net() -> NetInfo:
    """A 3 x 1 strip: J0 - J1 - J2 - J3, 500 m apart, each a signal."""
    xs = [0.0, 500.0, 1000.0, 1500.0]
    edges = {}
    for a in range(3):
        for f, t in ((a, a + 1), (a + 1, a)):
            eid = f"J{f}-J{t}"
            edges[eid] = EdgeInfo(
                id=eid,
                from_node=f"J{f}",
                to_node=f"J{t}",
                length_m=500.0,
                speed_mps=13.9,
                lanes=2,
                name="Main St",
                shape_xy=((xs[f], 0.0), (xs[t], 0.0)),
            )
    return NetInfo(
        path=Path("net.xml"),
        edges=edges,
        nodes_xy={f"J{i}": (x, 0.0) for i, x in enumerate(xs)},
        node_types={},
        tls={f"J{i}": _tls(f"J{i}", x, 0.0) for i, x in enumerate(xs)},
        lane_lengths_m={},
        bbox_xy=(0.0, -100.0, 1500.0, 100.0),
    )


MANIFEST = {
    "pois": [
        {"id": "fire_station_1", "role": "fire_station", "x": -50.0, "y": 0.0},
        {"id": "hospital_1", "role": "hospital", "x": 1550.0, "y": 0.0},
        {"id": "shelter_1", "role": "shelter", "x": 1500.0, "y": 50.0},
    ],
    "vms": [{"id": "vms_1", "x": 250.0, "y": 10.0}, {"id": "vms_2", "x": 750.0, "y": 10.0}],
    "zones": [{"id": "flood_1", "polygon_xy": [[0, -50], [600, -50], [600, 50], [0, 50]]}],
}

EV_SPEC = [
    {
        "id": "amb1",
        "kind": "ambulance",
        "dispatch_s": 600.0,
        "station": "fire_station_1",
        "call_edge": None,
        "destination": "nearest",
        "on_scene_s": 60.0,
    }
]


def _ev_events() -> pd.DataFrame:
    rows: list[dict[str, Any]] = [
        {"t_s": 0.0, "kind": "ev_setup"},
        {
            "t_s": 600.0,
            "kind": "ev_dispatched",
            "ev": "amb1",
            "call_edge": "J1-J2",
            "hospital": "hospital_1",
        },
    ]
    t = 600.0
    for k in range(4):
        rows.append({"t_s": t + 5, "kind": "priority_request", "ev": "amb1", "tls": f"J{k}"})
        rows.append(
            {
                "t_s": t + 30,
                "kind": "priority_release",
                "ev": "amb1",
                "tls": f"J{k}",
                "reason": "passed",
            }
        )
        rows.append({"t_s": t + 30, "kind": f"recovery J{k} cycle 1"})
        rows.append({"t_s": t + 150, "kind": f"recovery J{k} done"})
        t += 36.0  # 500 m in 36 s: 50 km/h between passings
    rows.append(
        {"t_s": 780.0, "kind": "priority_request", "ev": "amb1", "tls": "J9"}
    )  # never released
    rows.append({"t_s": 800.0, "kind": "ev_arrived", "ev": "amb1", "hospital": "hospital_1"})
    return pd.DataFrame(rows)


def _ev_run(**overrides: Any) -> dict[str, Any]:
    metrics = {
        **_run()["metrics"],
        "ev_s_per_km": 61.3558,
        "ev_time_to_hospital_s": 333.0,
        "ev": {
            "amb1": {
                "arrived": True,
                "time_to_hospital_s": 333.0,
                "distance_km": 5.43,
                "s_per_km": 61.36,
                "stops": 1,
                "hospital": "hospital_1",
            }
        },
    }
    spec = {
        "name": "ev_priority",
        "kind": "ev_priority",
        "seed": 7,
        "mode": "center",
        "city": {"preset": "district", "seed": 1, "path": None},
        "evs": EV_SPEC,
        "control": {"default": "fixed"},
    }
    return _run(
        id="run-ev-1",
        seed=7,
        scenario_name="ev_priority",
        scenario_kind="ev_priority",
        spec=spec,
        metrics=metrics,
        **overrides,
    )


def _vms_extra() -> dict[str, pd.DataFrame]:
    ev = pd.DataFrame(
        [
            {"t_s": 600.0, "kind": "incident_start", "id": "crash1", "edge": "J1-J2"},
            {"t_s": 720.0, "kind": "incident_detected", "id": "crash1", "edge": "J1-J2"},
            {"t_s": 2400.0, "kind": "incident_end", "id": "crash1", "edge": "J1-J2"},
        ]
    )
    t = np.arange(5.0, 3600.0, 5.0)
    inc = pd.DataFrame(
        {"t_s": t, "incident": "crash1", "queue_veh": (t > 600) * (t < 2400) * 9.0, "passed_veh": 1}
    )
    vms = pd.DataFrame(
        [
            {"t_s": 5.0, "sign": "vms_1", "kind": "travel_time", "text": "To H: 2 min"},
            {"t_s": 720.0, "sign": "vms_1", "kind": "incident_detour", "text": "Crash <ahead>"},
            {"t_s": 2400.0, "sign": "vms_1", "kind": "travel_time", "text": "To H: 3 min"},
            {"t_s": 5.0, "sign": "vms_2", "kind": "travel_time", "text": "To H: 1 min"},
        ]
    )
    return {"events": ev, "incident": inc, "vms": vms}


def _vms_run(**overrides: Any) -> dict[str, Any]:
    metrics = {
        **_run()["metrics"],
        "affected_veh": 187,
        "diverted_veh": 43,
        "diverted_share": 0.2299,
        "incidents": {"crash1": {"edge": "J1-J2", "queue_max_veh": 20.0, "recovery_s": 0.0}},
    }
    spec = {"name": "vms", "kind": "vms_diversion", "seed": 42, "vms": True, "signs": "all"}
    return _run(
        **{
            "id": "run-vms-1",
            "scenario_name": "vms",
            "scenario_kind": "vms_diversion",
            "spec": spec,
            "metrics": metrics,
            **overrides,
        }
    )


def _evac_extra() -> dict[str, pd.DataFrame]:
    t = np.arange(5.0, 3000.0, 5.0)
    share = np.clip((t - 300.0) / 1500.0, 0, 1)
    curve = pd.DataFrame(
        {
            "t_s": t,
            "departed_veh": share * 100,
            "left_zone_veh": share * 90,
            "arrived_veh": share * 80,
            "sheltered_veh": share * 80,
            "evacuated_share": share * 0.9,
            "sheltered_share": share * 0.8,
        }
    )
    occ = pd.DataFrame(
        {"t_s": [0.0, 500.0, 900.0], "shelter": "shelter_1", "occupancy_veh": [0, 10, 80]}
    )
    return {"evacuation": curve, "shelter_occupancy": occ}


def _evac_run() -> dict[str, Any]:
    metrics = {
        **_run()["metrics"],
        "evacuees_veh": 100,
        "zone_area_km2": 0.759,
        "zone_left_share": 0.9,
        "shelter_capacity_veh": {"shelter_1": 120},
        "contraflow_edges": ["J0-J1"],
        "evacuated_share_curve": [[float(t), t / 3000.0] for t in range(0, 3000, 300)],
    }
    spec = {"name": "evac", "kind": "evacuation", "seed": 42, "zone": "flood_1", "warning_s": 300.0}
    return _run(
        id="run-evac-1",
        scenario_name="evac",
        scenario_kind="evacuation",
        spec=spec,
        metrics=metrics,
    )


def _adaptive_extra() -> dict[str, pd.DataFrame]:
    rows = [
        {
            "t_s": float(t),
            "tls_id": f"J{k}",
            "cycle_s": 90.0 + k + t / 600.0,
            "flow_ratio_sum": 0.1 * k,
        }
        for t in range(60, 3600, 60)
        for k in range(6)
    ]
    greens = [
        {"tls_id": f"J{k}", "stage": s, "start_s": float(t + 30 * s), "green_s": 20.0 + s}
        for t in range(0, 3600, 90)
        for k in range(6)
        for s in range(3)
    ]
    return {"signal_timings": pd.DataFrame(rows), "greens_served": pd.DataFrame(greens)}


def _adaptive_run() -> dict[str, Any]:
    spec = {
        "name": "adaptive",
        "kind": "baseline",
        "seed": 42,
        "control": {"default": "adaptive", "adaptive": {"update_s": 60.0}},
    }
    return _run(id="run-ad-1", scenario_name="adaptive", spec=spec)


def _write(
    tmp_path: Path,
    run: dict[str, Any],
    extra: dict[str, pd.DataFrame] | None = None,
    *,
    geo: bool = True,
) -> tuple[SummaryFiles, str]:
    files = write_summary(
        run=run,
        series=_series(),
        queues=_queues(),
        out_dir=tmp_path,
        extra=extra if extra is not None else {},
        net=_net() if geo else None,
        manifest=MANIFEST if geo else None,
    )
    return files, files.html.read_text(encoding="utf-8")


def _panel_titles(doc: str) -> list[str]:
    return re.findall(r"<h4 class='panel'>([^<]*)</h4>", doc)


def _metric_row(doc: str, name: str) -> tuple[str, str]:
    m = re.search(
        rf"<tr><td>{re.escape(name)}</td><td class=num>([^<]*)</td>"
        r"<td class=num>([^<]*)</td>",
        doc,
    )
    assert m is not None, f"no metrics row for {name}"
    return m.group(1), m.group(2)


def _png_shape(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert float(np.std(img)) > 0.01  # not a blank canvas
    return img.shape[1], img.shape[0]


# ---------------------------------------------------------------------- panels per kind
def test_baseline_has_only_network_panels_and_png_size(tmp_path: Path) -> None:
    files, doc = _write(tmp_path / "out", _run())
    assert files.html == tmp_path / "out" / "summary.html"
    assert _panel_titles(doc) == list(NETWORK_TITLES)
    assert _png_shape(files.png) == png_size_px(4) == (1400, 930)
    for t in (*EV_TITLES, *VMS_TITLES, *EVAC_TITLES, ADAPTIVE_TITLE):
        assert t not in doc


def test_ev_priority_panels(tmp_path: Path) -> None:
    files, doc = _write(tmp_path, _ev_run(), {"events": _ev_events()})
    assert _panel_titles(doc) == [*NETWORK_TITLES, *EV_TITLES]
    assert _png_shape(files.png) == png_size_px(7) == (1400, 1770)
    assert "5 requests" in doc  # four passed + one never released
    assert "Clearance curves" not in doc and "Signs and their messages" not in doc


def test_vms_panels_and_evs_inside_vms(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path / "a", _vms_run(), _vms_extra())
    assert _panel_titles(doc) == [*NETWORK_TITLES, *VMS_TITLES]
    assert "incident_detour" in doc and "Crash &lt;ahead&gt;" in doc  # message table, escaped
    spec = {**_vms_run()["spec"], "evs": EV_SPEC}
    extra = _vms_extra()
    extra["events"] = pd.concat([extra["events"], _ev_events()], ignore_index=True)
    _files, doc = _write(tmp_path / "b", _vms_run(spec=spec), extra)
    assert _panel_titles(doc) == [*NETWORK_TITLES, *EV_TITLES, *VMS_TITLES]


def test_evacuation_panels(tmp_path: Path) -> None:
    files, doc = _write(tmp_path, _evac_run(), _evac_extra())
    assert _panel_titles(doc) == [*NETWORK_TITLES, *EVAC_TITLES]
    assert _png_shape(files.png) == png_size_px(7)


def test_adaptive_panels_pick_the_busiest_signals(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _adaptive_run(), _adaptive_extra())
    titles = _panel_titles(doc)
    assert titles[:4] == list(NETWORK_TITLES)
    # J3 has the longest queues, then J5, J4 (queue = k otherwise)
    assert titles[4:] == [
        ADAPTIVE_TITLE,
        "Greens served per stage at J3",
        "Greens served per stage at J5",
    ]


def test_fixed_baseline_with_timings_in_store_is_still_adaptive_only_by_data(
    tmp_path: Path,
) -> None:
    _files, doc = _write(tmp_path, _run(), {"greens_served": _adaptive_extra()["greens_served"]})
    assert ADAPTIVE_TITLE not in doc  # greens alone (every guarded run has them) are not adaptive


# ---------------------------------------------------------------------- metrics
def test_units_from_suffixes(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _ev_run())
    assert re.search(r"<td>ev_s_per_km</td><td class=num>61\.36</td><td[^>]*>s/km<", doc)
    assert _metric_row(doc, "ev_s_per_km")[1] == "s/km"
    assert _metric_row(doc, "mean_travel_time_s") == ("312.46", "s")
    assert _metric_row(doc, "total_delay_h")[1] == "h"
    assert _metric_row(doc, "mean_route_length_m")[1] == "m"
    assert _metric_row(doc, "mean_speed_mps") == ("8.50", "m/s")
    assert _metric_row(doc, "throughput_veh") == ("12,345", "veh")
    assert [
        unit(n)
        for n in (
            "zone_area_km2",
            "diverted_share",
            "x_kph",
            "x_vph",
            "s_per_km",
            "delay_veh_s",
            "distance_km",
            "teleports",
        )
    ] == ["km²", "%", "km/h", "veh/h", "s/km", "veh·s", "km", "veh"]


def test_shares_shown_as_percent_and_glossary(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _vms_run(), _vms_extra())
    assert _metric_row(doc, "diverted_share") == ("23.0", "%")
    assert "Share of the affected drivers who took the detour." in doc


def test_metrics_grouped(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _ev_run())
    tables = dict(re.findall(r"<table class='metrics metrics-(\w+)'>(.*?)</table>", doc))
    assert set(tables) == {"network", "scenario", "signals", "guard"}
    assert "<td>throughput_veh</td>" in tables["network"]
    assert "<td>ev_s_per_km</td>" in tables["scenario"]
    assert "<td>max_queue_veh</td>" in tables["signals"]
    assert "<td>guard_commands</td>" in tables["guard"]
    assert "guard_commands" not in tables["network"]


def test_nested_metrics_become_tables(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _ev_run())
    assert "500 entries" not in doc
    assert "top 10 of 500 by value (largest first)" in doc
    # the largest ten, largest first; J0 (the smallest) is not shown
    block = doc.split("<h4>max_queue_by_tls_veh")[1].split("</table>")[0]
    shown = re.findall(r"<td>(J\d+)</td>", block)
    assert shown == [f"J{i}" for i in range(499, 489, -1)]
    assert "value [veh]" in block
    ev_block = doc.split("<h4>ev —")[1].split("</table>")[0]
    assert "time_to_hospital_s [s]" in ev_block and "s_per_km [s/km]" in ev_block
    assert "<td>amb1</td>" in ev_block and "hospital_1" in ev_block


def test_spec_in_report_as_toml(tmp_path: Path) -> None:
    _files, doc = _write(tmp_path, _ev_run())
    spec = doc.split("<h2>Spec that ran</h2>")[1].split("<h2>")[0]
    assert "kind = &quot;ev_priority&quot;" in spec
    assert "[[evs]]" in spec and "station = &quot;fire_station_1&quot;" in spec
    assert "call_edge" not in spec  # None is left out (TOML has no null)


# ---------------------------------------------------------------------- plots
@pytest.mark.parametrize(
    ("run", "extra"),
    [
        (_ev_run, _ev_events),
        (_vms_run, _vms_extra),
        (_evac_run, _evac_extra),
        (_adaptive_run, _adaptive_extra),
    ],
)
def test_every_plot_has_title_labels_legend(run: Any, extra: Any) -> None:
    frames = extra()
    frames = frames if isinstance(frames, dict) else {"events": frames}
    d = RunData(
        run=run(),
        frames={**frames, "network": _series(), "queues": _queues()},
        net=_net(),
        manifest=MANIFEST,
    )
    for panel in panels_for(d):
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        _draw(panel, ax)
        assert ax.get_title() == panel.title
        assert ax.get_xlabel(), panel.title
        assert "[" in ax.get_xlabel() + ax.get_ylabel(), f"no unit: {panel.title}"
        labelled = [h for h in ax.get_legend_handles_labels()[1] if not h.startswith("_")]
        if len(labelled) > 1:
            assert ax.get_legend() is not None, f"no legend: {panel.title}"
        assert not any(t.get_text().startswith(("no ", "panel failed")) for t in ax.texts), (
            f"{panel.title} drew nothing"
        )


def test_captions_name_run_and_seed(tmp_path: Path) -> None:
    files, doc = _write(tmp_path, _ev_run(), {"events": _ev_events()})
    caps = re.findall(r"<figcaption>(.*?)</figcaption>", doc)
    assert len(caps) == 7
    assert all("run run-ev-1 · seed 7" in c for c in caps)
    assert files.png.stat().st_size > 10_000


def test_ev_holds_and_profile() -> None:
    d = RunData(run=_ev_run(), frames={"events": _ev_events()}, net=_net(), manifest=MANIFEST)
    h = holds(d)
    assert list(h["tls"]) == ["J0", "J1", "J2", "J3", "J9"]
    assert list(h["release_s"] - h["request_s"])[:4] == [25.0] * 4
    assert np.isnan(h["release_s"].iloc[4]) and h["reason"].iloc[4] == ""
    profile = next(p for p in panels_for(d) if p.title == "EV speed/time profile")
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    profile.draw(ax)
    # 500 m in 36 s between signals = 50 km/h
    markers = next(ln for ln in ax.get_lines() if ln.get_label() == "amb1: signal passed")
    assert np.allclose(np.asarray(markers.get_ydata())[1:], 50.0)


def test_series_and_map_read_from_the_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _ev_events().to_parquet(run_dir / "events.parquet")
    (run_dir / "sumo_args.json").write_text(json.dumps(["--net-file", str(tmp_path / "no.xml")]))
    run = _ev_run(run_dir=str(run_dir), series_files=["events.parquet"])
    files = write_summary(run=run, series=None, queues=None, out_dir=tmp_path / "out")
    doc = files.html.read_text(encoding="utf-8")
    assert "5 requests" in doc  # events came from the folder
    assert _panel_titles(doc) == [*NETWORK_TITLES, *EV_TITLES]


# ---------------------------------------------------------------------- robustness
def test_escapes_user_strings(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    run = _run(scenario_name=evil, city_name="A&B <city>", versions={"x": "<b>1</b>"})
    _files, doc = _write(tmp_path, run)
    assert evil not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "A&amp;B &lt;city&gt;" in doc
    assert "<b>1</b>" not in doc
    assert "abcdef012345" in doc and "abcdef0123456" not in doc


def test_failed_run_shows_error(tmp_path: Path) -> None:
    run = _run(status="failed", metrics=None, spec=None, error="TraCI lost <at> step 99")
    files = write_summary(run=run, series=None, queues=None, out_dir=tmp_path)
    doc = files.html.read_text(encoding="utf-8")
    assert "class='error'" in doc and "TraCI lost &lt;at&gt; step 99" in doc
    assert "No metrics." in doc and "No spec recorded." in doc
    assert _png_shape(files.png) == png_size_px(4)


@pytest.mark.parametrize(
    ("series", "queues", "extra"),
    [
        (None, None, {}),
        (pd.DataFrame(), pd.DataFrame(), {"events": pd.DataFrame()}),
        (
            pd.DataFrame(columns=["t_s", "mean_speed_mps"]),
            pd.DataFrame(columns=["t_s"]),
            {"events": pd.DataFrame({"t_s": [1.0], "kind": ["priority_release"]})},
        ),
        (
            None,
            pd.DataFrame({"t_s": [0.0], "tls_id": ["J1"], "queue_veh": [float("nan")]}),
            {"vms": pd.DataFrame({"t_s": [5.0], "sign": ["v"], "kind": ["k"]})},
        ),
    ],
)
def test_missing_or_empty_data(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    series: pd.DataFrame | None,
    queues: pd.DataFrame | None,
    extra: dict[str, pd.DataFrame],
) -> None:
    for k, run in enumerate((_ev_run(), _vms_run(), _evac_run(), _adaptive_run())):
        run.update(status="running", finished_at=None, metrics={}, versions=None)
        files = write_summary(
            run=run, series=series, queues=queues, out_dir=tmp_path / str(k), extra=extra
        )
        doc = files.html.read_text(encoding="utf-8")
        assert "running" in doc
        assert files.png.read_bytes()[:8] == PNG_MAGIC
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
