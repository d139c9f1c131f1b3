"""Benchmark: how long the pictures take.

    python -m experiments.viz_speed --json OUT.json [--mp4-seconds 10]

One recorded run of ``ev_priority`` on the district, 1 h, with trajectories (not timed),
then, each timed with ``time.perf_counter``:

- ``timespace_s``: the EV corridor's time-space diagram from the run's records (reading
  the signal-state record and the FCD, drawing, saving the PNG);
- ``render_png_s``: one 3D frame of the district (building the scene, the vehicles and
  signals at one moment, the off-screen render, the PNG);
- ``render_mp4_s_per_min``: seconds per minute of simulated time in an MP4 at 10 frames
  per simulated second; measured over ``--mp4-seconds`` of simulated time (default 10 s,
  100 frames) and scaled to a minute (``render_mp4_measured_s`` and ``_frames`` say what
  was measured);
- ``web_frame_ms_p50`` / ``web_frame_ms_p99``: the web map's server side for an
  interactive district session followed at 10 Hz: one frame (the session's observation and
  map state from its worker, the frame for an operator, the delta against the last) after
  each 1-s advance, over ``--web-frames`` frames.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from city_models.build import build_city
from experiments._output import emit_json
from experiments._run import request, run_all
from twin.app.api.routers.map import CityGeometry, delta, session_frame
from twin.app.sessions import SessionManager
from twin.config import load_settings
from viz.scene3d import Scene, read_vehicles, render_png, states_at, vehicles_at, write_movie
from viz.timespace import ev_route, read_signal_states, read_trajectories, timespace_figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--mp4-seconds", type=float, default=10.0)
    parser.add_argument("--web-frames", type=int, default=200)
    args = parser.parse_args(argv)
    settings = load_settings()
    city = build_city("district", seed=1, cities_dir=settings.cities_dir)
    raw: dict[str, Any] = {
        "name": "viz-speed", "kind": "ev_priority", "seed": 42, "sim": {"duration_s": 3600},
        "outputs": {"trajectories": True},
        "evs": [{"id": "amb1", "dispatch_s": 600, "station": "fire_station_1"}],
    }  # fmt: skip
    (record,) = run_all(settings, [request(raw, city, seed=42, source="viz_speed", owner="bench")],
                        workers=1, label="viz_speed run")  # fmt: skip
    run_dir = Path(str(record.run_dir))
    out: dict[str, Any] = {"run_id": record.id}
    with tempfile.TemporaryDirectory(prefix="viz-speed-") as tmp:
        root = Path(tmp)
        # time-space
        t0 = time.perf_counter()
        route = ev_route(run_dir / "fcd.xml.gz", "amb1")
        states = read_signal_states(run_dir / "signal_states.xml")
        traj = read_trajectories(run_dir / "fcd.xml.gz", edges=set(route))
        import pandas as pd  # noqa: PLC0415

        events = pd.read_parquet(run_dir / "events.parquet")
        fig, _ = timespace_figure(
            [{"net": city.net, "edges": route, "states": states, "trajectories": traj,
              "events": events, "t_range": (0.0, 3600.0), "ev_ids": ["amb1"], "title": "EV"}],
            caption=f"run {record.id}",
        )  # fmt: skip
        fig.savefig(root / "ts.png", dpi=110)
        out["timespace_s"] = round(time.perf_counter() - t0, 2)
        # one 3D frame
        t_frame = 900.0
        steps = read_vehicles(run_dir / "fcd.xml.gz", t_frame - 1, t_frame + args.mp4_seconds + 1)
        t0 = time.perf_counter()
        scene = Scene(city.net, city.manifest, symbol_scale=3.0)
        scene.update(signal_states=states_at(states, t_frame), vehicles=vehicles_at(steps, t_frame),
                     ev_ids=["amb1"])  # fmt: skip
        render_png(scene, root / "frame.png")
        out["render_png_s"] = round(time.perf_counter() - t0, 2)
        # MP4
        t0 = time.perf_counter()
        movie = Scene(city.net, city.manifest)
        frames = write_movie(movie, root / "m.mp4", steps=steps, timelines=states, t0_s=t_frame,
                             seconds=args.mp4_seconds, fps=10, ev_ids=["amb1"],
                             follow="amb1")  # fmt: skip
        measured = time.perf_counter() - t0
        out["render_mp4_measured_s"] = round(measured, 2)
        out["render_mp4_frames"] = frames
        out["render_mp4_s_per_min"] = round(measured * 60.0 / args.mp4_seconds, 1)
    # the web map's frames, server side
    manager = SessionManager(settings)
    try:
        sid, _layout = manager.create({"name": "web", "kind": "baseline", "seed": 1,
                                       "sim": {"duration_s": 3600}}, city, seed=1)  # fmt: skip
        geo = CityGeometry(city)
        manager.call(sid, "advance", seconds=300.0)
        last: dict[str, Any] = {}
        times_ms = []
        for _ in range(args.web_frames):
            manager.call(sid, "advance", seconds=1.0)
            t0 = time.perf_counter()
            obs = manager.call(sid, "observe")
            state = manager.call(sid, "map_state")
            frame = session_frame(geo, obs, state, role="operator")
            delta(last, frame)
            last = frame
            times_ms.append((time.perf_counter() - t0) * 1000.0)
        manager.call(sid, "close")
    finally:
        manager.shutdown()
    out["web_frame_ms_p50"] = round(statistics.median(times_ms), 2)
    out["web_frame_ms_p99"] = round(float(np.percentile(times_ms, 99)), 2)
    out["web_frames"] = len(times_ms)
    out["web_vehicles_last_frame"] = len(last.get("vehicles", {}))
    emit_json(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
