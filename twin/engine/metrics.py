"""Run metrics and time series from SUMO's own outputs (tripinfo, summary, statistics)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.engine.sumo_tools import iter_xml_elements

log = logging.getLogger(__name__)


NOT_AVAILABLE = (-1.0, -2.0, -3.0)
"""What SUMO's outputs write for "not available" (no vehicle, not arrived, not known)."""

HCM_LOS_S: tuple[tuple[str, float], ...] = (
    ("A", 10.0), ("B", 20.0), ("C", 35.0), ("D", 55.0), ("E", 80.0),
)  # fmt: skip
"""HCM level of service of a signalized approach: the highest control delay per vehicle
(s) of each letter; above the last, ``F``."""


def geh(model: float, count: float) -> float:
    """GEH statistic of two hourly flows (vehicles/h): ``sqrt(2 (m - c)^2 / (m + c))``.

    The traffic-model check of the FHWA Toolbox and WebTAG: a site fits when GEH < 5.
    """
    total = model + count
    return 0.0 if total <= 0 else math.sqrt(2.0 * (model - count) ** 2 / total)


def sumo_value(text: str | float | None) -> float:
    """A number from SUMO's outputs; its "not available" values (-1, -2, -3) and a missing
    value become NaN, so they are never averaged in."""
    if text is None or text == "":
        return float("nan")
    x = float(text)
    return float("nan") if x in NOT_AVAILABLE else x


def level_of_service(delay_s: float) -> str | None:
    """HCM level of service (A-F) for a control delay per vehicle at a signal; ``None``
    when the delay is not known (NaN: no vehicle used the approach)."""
    if math.isnan(delay_s):
        return None
    for letter, upto_s in HCM_LOS_S:
        if delay_s <= upto_s:
            return letter
    return "F"


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
    duration: list[float] = []
    loss: list[float] = []
    stops: list[float] = []
    length: list[float] = []
    waiting: list[float] = []
    depart_delay: list[float] = []
    arrived = inserted = 0
    for trip in iter_xml_elements(tripinfo, "tripinfo"):
        if trip["id"] in exclude:
            continue
        inserted += 1
        # SUMO's "not available" (-1 ...) values are left out, never averaged in
        loss.append(sumo_value(trip["timeLoss"]))
        depart_delay.append(sumo_value(trip.get("departDelay", 0.0)))
        if float(trip["arrival"]) < 0:
            continue  # still driving when the run ended
        arrived += 1
        duration.append(sumo_value(trip["duration"]))
        stops.append(sumo_value(trip["waitingCount"]))
        length.append(sumo_value(trip["routeLength"]))
        waiting.append(sumo_value(trip["waitingTime"]))

    def mean(values: list[float]) -> float:
        known = [v for v in values if not math.isnan(v)]
        return float(np.mean(known)) if known else float("nan")

    return {
        "throughput_veh": arrived,
        "unfinished_veh": inserted - arrived,
        "mean_travel_time_s": mean(duration),
        "mean_delay_s": mean(loss),
        "mean_depart_delay_s": mean(depart_delay),
        "total_delay_h": float(np.nansum(loss)) / 3600.0,
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
                # SUMO writes -1 when no vehicle is running: NaN, not a mean of -1
                "mean_speed_mps": sumo_value(step.get("meanSpeed")),
                "mean_waiting_s": sumo_value(step.get("meanWaitingTime")),
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


def approach_delays(
    edge_data: Path, approaches: Mapping[str, Sequence[str]]
) -> dict[str, float | None]:
    """Time loss per vehicle on each approach, from SUMO's ``edgeData`` over the approach
    edges (one interval, the whole run).

    ``approaches``: approach id (``<signal>/<edge>``) -> its edges, the stop line's first,
    then upstream (edges that lead only into the next one: a turn pocket's street). The
    delay of an approach is SUMO's ``timeLoss`` on its edges (time lost to driving below
    the desired speed: slowing for the signal, waiting, starting again) over the vehicles
    that used it (``entered`` into its first edge upstream plus ``departed`` on any): the
    approximation of HCM control delay that SUMO measures. ``None`` when no vehicle used
    it (``None``, not NaN: metrics compare equal and are JSON).
    """
    loss: dict[str, float] = {}
    entered: dict[str, float] = {}
    departed: dict[str, float] = {}
    for edge in iter_xml_elements(edge_data, "edge"):
        eid = edge["id"]
        loss[eid] = loss.get(eid, 0.0) + float(edge.get("timeLoss", 0.0))
        entered[eid] = entered.get(eid, 0.0) + float(edge.get("entered", 0.0))
        departed[eid] = departed.get(eid, 0.0) + float(edge.get("departed", 0.0))
    out: dict[str, float | None] = {}
    for a, edges in approaches.items():
        used = entered.get(edges[-1], 0.0) + sum(departed.get(e, 0.0) for e in edges)
        lost = sum(loss.get(e, 0.0) for e in edges)
        out[a] = lost / used if used > 0 else None
    return out


def approach_los(delays: Mapping[str, float | None]) -> dict[str, str | None]:
    """HCM level of service of every approach (see :func:`level_of_service`)."""
    return {a: None if d is None else level_of_service(d) for a, d in delays.items()}
