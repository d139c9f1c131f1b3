"""Time-space diagrams (viz.timespace, `twin plot timespace`): the bands are what SUMO's
signal-state record says, trajectories follow the corridor, the EV and its priority
windows are drawn; and a real run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
from typer.testing import CliRunner

from city_models.build import City
from twin.app.cli import app
from viz.timespace import (
    Band,
    corridor,
    read_signal_states,
    signal_bands,
    timespace_figure,
)


def _through_corridor(city: City) -> tuple[list[str], str, int]:
    """Two edges straight through a signal: (edges, tls id, link index)."""
    for tls in sorted(city.net.tls.values(), key=lambda t: t.id):
        for link in tls.links:
            if link.direction == "s":
                return [link.from_edge, link.to_edge], tls.id, link.index
    raise AssertionError("no through link")


def _states_file(path: Path, tls: str, n_links: int, index: int) -> Path:
    def state(ch: str) -> str:
        return "".join(ch if k == index else "r" for k in range(n_links))

    rows = [(0.0, "G"), (30.0, "y"), (33.0, "r"), (35.0, "r"), (60.0, "G")]  # 35: another link
    body = "\n".join(
        f'    <tlsState time="{t:.2f}" id="{tls}" programID="0" phase="0" state="{state(ch)}"/>'
        for t, ch in rows
    )
    path.write_text(f"<tlsStates>\n{body}\n</tlsStates>\n", encoding="utf-8")
    return path


def test_bands_are_the_records_durations(district_city: City, tmp_path: Path) -> None:
    edges, tls, index = _through_corridor(district_city)
    n = len(district_city.net.tls[tls].links)
    states = read_signal_states(_states_file(tmp_path / "s.xml", tls, n, index))
    bands = signal_bands(states[tls], index, end_s=90.0)
    # the unchanged record at 35 s (another link switched) does not split the red band
    assert bands == [Band(0.0, 30.0, "G"), Band(30.0, 33.0, "y"), Band(33.0, 60.0, "r"),
                     Band(60.0, 90.0, "G")]  # fmt: skip
    offsets, signals = corridor(district_city.net, edges)
    assert offsets[edges[0]] == 0.0
    (sig,) = [s for s in signals if s.tls == tls]
    assert sig.link_index == index
    assert sig.distance_m == pytest.approx(district_city.net.edges[edges[0]].length_m)


def test_figure_draws_bands_trajectories_ev_and_windows(
    district_city: City, tmp_path: Path
) -> None:
    edges, tls, index = _through_corridor(district_city)
    n = len(district_city.net.tls[tls].links)
    states = read_signal_states(_states_file(tmp_path / "s.xml", tls, n, index))
    rows = []
    for k in range(20):  # car c1 along the first edge, the EV behind it
        rows.append((float(k), "c1", "car", edges[0], 5.0 * k, 5.0))
        rows.append((float(k), "amb1", "ambulance", edges[0], 4.0 * k, 4.0))
    traj = pd.DataFrame(rows, columns=["t_s", "vehicle", "type", "edge", "pos_m", "speed_mps"])
    events = pd.DataFrame(
        [{"t_s": 5.0, "kind": "priority_request", "tls": tls},
         {"t_s": 25.0, "kind": "priority_release", "tls": tls}]
    )  # fmt: skip
    panel = {"net": district_city.net, "edges": edges, "states": states,
             "trajectories": traj, "events": events, "t_range": (0.0, 90.0),
             "ev_ids": ["amb1"], "title": "t"}  # fmt: skip
    fig, (drawn,) = timespace_figure([panel], caption="run r1 seed 1")
    assert drawn["vehicles"] == 1 and drawn["windows"] == 1
    assert [b.state for b in drawn["bands"][tls]] == ["G", "y", "r", "G"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "simulation time [s]" and "[m]" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"green", "yellow", "red", "priority window", "EV amb1"} <= set(labels)
    out = tmp_path / "ts.png"
    fig.savefig(out, dpi=100)
    height, width = mpimg.imread(out).shape[:2]
    assert (width, height) == (1100, 600)


@pytest.mark.sumo
@pytest.mark.slow
def test_plot_timespace_of_a_real_run(district_city: City, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--city", str(district_city.path), "--data-dir", str(tmp_path), "--json"]
    res = runner.invoke(app, ["run", "ev_priority", *base, "--set", "sim.duration_s=600",
                              "--set", "evs.0.dispatch_s=120",
                              "--set", "outputs.trajectories=true"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = json.loads(res.output.strip().splitlines()[-1])
    run_dir = Path(run["run_dir"])
    # the run's report embeds the corridor's time-space diagram and a 3D still
    page = Path(run["summary_html"]).read_text(encoding="utf-8")
    assert "Time-space diagram of amb1" in page and "3D scene at mid-run" in page
    assert "panel failed" not in page
    png = tmp_path / "ts.png"
    res = runner.invoke(app, ["plot", "timespace", run["id"], "--out", str(png),
                              "--data-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 20_000
    # the bands drawn are the record's own switches: their durations add up to the run
    states = read_signal_states(run_dir / "signal_states.xml")
    assert len(states) == district_city.manifest.counts["signals"]
    some = next(iter(states.values()))
    bands = signal_bands(some, 0, end_s=600.0)
    assert sum(b.t1_s - b.t0_s for b in bands) == pytest.approx(600.0 - some[0][0])
    assert {b.state for b in bands} >= {"y"} or {b.state for b in bands} >= {"r"}
