"""Run metrics and time series from SUMO's own outputs (tripinfo, summary, statistics)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.engine.sumo_tools import iter_xml_elements

log = logging.getLogger(__name__)


def trip_metrics(
    tripinfo: Path, *, exclude: frozenset[str] = frozenset()
) -> dict[str, float | int]:
    """Trip metrics from ``--tripinfo-output`` (with unfinished trips written).

    ``mean_delay_s`` is SUMO's timeLoss (time lost to driving below the desired speed)
    averaged over every inserted vehicle, arrived or still driving at the end;
    ``mean_depart_delay_s`` is the time vehicles waited to enter the network.
    ``throughput_veh`` counts arrivals; travel time and stops are over arrivals.
    Vehicles in ``exclude`` (e.g. the scenario's emergency vehicles) are left out, so
    the figures describe everyone else.
    """
    duration, loss, stops, length, waiting, depart_delay = [], [], [], [], [], []
    arrived = 0
    for trip in iter_xml_elements(tripinfo, "tripinfo"):
        if trip["id"] in exclude:
            continue
        loss.append(float(trip["timeLoss"]))
        depart_delay.append(float(trip.get("departDelay", 0.0)))
        if float(trip["arrival"]) < 0:
            continue  # still driving when the run ended
        arrived += 1
        duration.append(float(trip["duration"]))
        stops.append(int(trip["waitingCount"]))
        length.append(float(trip["routeLength"]))
        waiting.append(float(trip["waitingTime"]))

    def mean(values: list[float] | list[int]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "throughput_veh": arrived,
        "unfinished_veh": len(loss) - arrived,
        "mean_travel_time_s": mean(duration),
        "mean_delay_s": mean(loss),
        "mean_depart_delay_s": mean(depart_delay),
        "total_delay_h": float(np.sum(loss)) / 3600.0,
        "mean_stops": mean(stops),
        "mean_waiting_s": mean(waiting),
        "mean_route_length_m": mean(length),
    }


def statistics_metrics(statistics: Path) -> dict[str, int]:
    """Vehicle counts and teleports from ``--statistic-output``."""
    out: dict[str, int] = {}
    for tag, keys in (("vehicles", ("loaded", "inserted", "running", "waiting")),
                      ("teleports", ("total", "jam", "yield", "wrongLane"))):  # fmt: skip
        for elem in iter_xml_elements(statistics, tag):
            for key in keys:
                if key in elem:
                    name = f"vehicles_{key}" if tag == "vehicles" else f"teleports_{key}"
                    out[name.replace("teleports_total", "teleports")] = int(float(elem[key]))
    return out


def summary_series(summary: Path, *, every_s: float) -> pd.DataFrame:
    """Network state over time from ``--summary-output``, one row each ``every_s``."""
    rows: list[dict[str, float]] = []
    next_t = -np.inf
    for step in iter_xml_elements(summary, "step"):
        t = float(step["time"])
        if t + 1e-9 < next_t:
            continue
        next_t = t + every_s
        rows.append(
            {
                "t_s": t,
                "vehicles_running": float(step["running"]),
                "vehicles_arrived": float(step["arrived"]),
                "vehicles_halting": float(step["halting"]),
                # SUMO writes -1 when no vehicle is running
                "mean_speed_mps": float(step["meanSpeed"])
                if float(step["meanSpeed"]) >= 0
                else np.nan,
                "mean_waiting_s": float(step["meanWaitingTime"]),
            }
        )
    return pd.DataFrame(rows)


def queue_metrics(queues: pd.DataFrame) -> dict[str, Any]:
    """Max and mean queue per intersection from the sampled queue series."""
    if queues.empty:
        return {"max_queue_veh": 0.0, "mean_queue_veh": 0.0, "max_queue_by_tls_veh": {}}
    by_tls = queues.groupby("tls_id")["queue_veh"]
    return {
        "max_queue_veh": float(by_tls.max().max()),
        "mean_queue_veh": float(queues["queue_veh"].mean()),
        "max_queue_by_tls_veh": {k: float(v) for k, v in by_tls.max().items()},
    }
