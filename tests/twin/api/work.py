"""A stand-in simulation for the API tests, module-level so spawned workers import it.

It reads what to do from the scenario's ``description``: ``""`` finishes at once,
``"sleep:S"`` takes S seconds (reporting progress), ``"crash"`` dies like SUMO does
(SIGKILL). It writes the series and SUMO outputs a real run has, with raw vehicle ids
and an emergency vehicle in them, so de-identification has something to remove.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd

from twin.engine.executors import Progress, RunOutcome, RunRequest

TRIPINFO = """<tripinfos>
{rows}
</tripinfos>
"""
TRIP = (
    '<tripinfo id="{id}" depart="{depart}" departLane="e1_0" arrival="{arrival}" '
    'arrivalLane="e9_0" duration="{duration}" routeLength="1200.5" waitingTime="3.00" '
    'waitingCount="1" timeLoss="12.25" vType="{vtype}"/>'
)


def work(request: RunRequest, run_dir: Path, progress: Progress | None) -> RunOutcome:
    (run_dir / "worker.pid").write_text(str(os.getpid()), encoding="utf-8")
    what = str(request.spec.get("description", ""))
    if what == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    total_s = float(what.split(":")[1]) if what.startswith("sleep:") else 0.0
    steps = 10
    for k in range(1, steps + 1):
        time.sleep(total_s / steps)
        if progress is not None:
            progress(30.0 * k, 300.0)
    rows = [TRIP.format(id=f"t{k}", depart=k, arrival=k + 100, duration=100, vtype="car")
            for k in range(12)]  # fmt: skip
    rows.append(TRIP.format(id="amb1", depart=5, arrival=200, duration=195, vtype="ambulance"))
    (run_dir / "tripinfo.xml").write_text(TRIPINFO.format(rows="\n".join(rows)), encoding="utf-8")
    queues = pd.DataFrame({"t_s": [60.0, 60.0, 120.0], "tls_id": ["a", "b", "a"],
                           "queue_veh": [0.0, 3.0, 7.0],
                           "stopped_delay_est_veh_s": [0.0, 180.0, 420.0]})  # fmt: skip
    events = pd.DataFrame([
        {"t_s": 0.0, "kind": "baseline_start"},
        {"t_s": 60.0, "kind": "ev_dispatched", "ev": "amb1", "call_edge": "e5"},
        {"t_s": 70.0, "kind": "vehicle_unreachable", "vehicle": "t3"},
    ])  # fmt: skip
    secret = pd.DataFrame({"t_s": [1.0], "anything": [1.0]})
    return RunOutcome(
        metrics={"seed": request.seed, "pid": os.getpid(), "mean_delay_s": 12.5},
        series={"queues": queues, "events": events, "unknown_series": secret},
    )
