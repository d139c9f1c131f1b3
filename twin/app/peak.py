"""Does the city's peak look like a Korean city centre at peak? (``twin city check-peak``)

The check runs the city's background demand alone (no EV, no incident: the
``baseline`` kind on the network's fixed-time plans), lets the network fill for
``warmup_s``, and measures over the rest of the hour, from what SUMO wrote:

- ``arterial_speed_kph`` and ``network_speed_kph``: space-mean speed (distance driven /
  time spent, stops included) over the arterial edges and over every edge, from an
  ``laneData`` output over the measurement window;
- ``vc_p90``: the 90th percentile, over the arterial approaches of the signals, of
  volume / capacity, where volume is the approach's measured flow and capacity is
  Σ over its lanes of ``SATURATION_VPH_PER_LANE × g / C`` from the plan it ran;
- ``vc_max``: the busiest arterial approach's volume / capacity;
- ``stops_per_km``: SUMO's stop count per trip (``waitingCount``: speed below 0.1 m/s)
  over the distance, for trips that departed after the warm-up and arrived;
- ``intersection_delay_s``: SUMO's time loss per vehicle on the signals' approach edges
  (the same figure as the runs' ``approach_delay_s``), averaged by vehicles.

The targets are in :data:`PEAK_TARGETS`, with where each comes from. Nothing here
looks at an emergency vehicle: the calibration is of traffic, not of the result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from city_models.build import City
from city_models.net import NetInfo
from scenarios.loader import parse_scenario
from twin.app.compose import execute_request, run_request
from twin.config import Settings
from twin.engine.executors import RunProgress, RunRequest, run_requests
from twin.engine.store import RunRecord
from twin.errors import RunError

# (low, high) per figure, inclusive. Sources: TRAFFIC_NOTES.md "What a Korean city
# centre looks like at peak" — Seoul's centre 18 km/h at peak (17–19 in 2013–2017), the
# city as a whole 24–26 km/h; v/c of the busiest approaches near capacity at peak; HCM's
# LOS D (35–55 s) to E (55–80 s) for intersection delay; stops: a signal every ~200 m with
# roughly every second one stopping a car at peak (≈ 1–3 per km).
PEAK_TARGETS: dict[str, tuple[float, float]] = {
    "arterial_speed_kph": (18.0, 22.0),
    "network_speed_kph": (20.0, 26.0),
    "vc_p90": (0.85, 1.0),
    "stops_per_km": (1.0, 3.0),
    "intersection_delay_s": (35.0, 80.0),
}
SATURATION_VPH_PER_LANE = 1800.0  # TRAFFIC_NOTES.md: 1,800–1,900 pcu/h per through lane
ARTERIAL_CLASSES = frozenset({"arterial", "trunk", "primary", "motorway"})
DEFAULT_WARMUP_S = 900.0
DEFAULT_DURATION_S = 3600.0


def edge_data_additional(path: Path, out: Path, *, begin_s: float, end_s: float) -> Path:
    """An additional file asking SUMO for one ``laneData`` interval over every lane."""
    path.write_text(
        "<additional>\n"
        f'  <laneData id="peak_check" file="{out.resolve()}" begin="{begin_s:g}" '
        f'end="{end_s:g}" excludeEmpty="true" withInternal="false"/>\n'
        "</additional>\n",
        encoding="utf-8",
    )
    return path


SUMMED = ("sampledSeconds", "left", "entered", "timeLoss", "waitingTime")


def read_lane_data(path: Path) -> dict[str, dict[str, float]]:
    """Per lane: SUMO's ``laneData`` attributes (numbers only) of the first interval."""
    root = ElementTree.parse(path).getroot()
    interval = root.find("interval")
    out: dict[str, dict[str, float]] = {}
    for edge in interval if interval is not None else []:
        for lane in edge:
            values: dict[str, float] = {}
            for key, text in lane.attrib.items():
                if key == "id":
                    continue
                try:
                    values[key] = float(text)
                except ValueError:
                    continue
            out[lane.attrib["id"]] = values
    return out


def edges_of(lanes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Lane figures summed per edge; ``speed`` the edge's space-mean speed."""
    out: dict[str, dict[str, float]] = {}
    for lane, values in lanes.items():
        edge = out.setdefault(lane.rsplit("_", 1)[0], dict.fromkeys((*SUMMED, "metres"), 0.0))
        for key in SUMMED:
            edge[key] += values.get(key, 0.0)
        edge["metres"] += values.get("sampledSeconds", 0.0) * values.get("speed", 0.0)
    for edge in out.values():
        edge["speed"] = edge["metres"] / edge["sampledSeconds"] if edge["sampledSeconds"] else 0.0
    return out


def edge_class(city: City, net: NetInfo, edge_id: str) -> str:
    """The road class of an edge: the manifest's (imported cities), else the generator's
    street name ("Arterial NS-3"), else by speed (≥ 50 km/h: arterial)."""
    known = city.manifest.edge_classes.get(edge_id)
    if known:
        return known
    edge = net.edges[edge_id]
    first = edge.name.split(" ")[0].lower() if edge.name else ""
    if first in ("arterial", "collector", "local"):
        return first
    return "arterial" if edge.speed_mps >= 50 / 3.6 - 0.01 else "local"


def _space_mean_kph(data: dict[str, dict[str, float]], edges: Sequence[str]) -> float | None:
    seconds = sum(data[e].get("sampledSeconds", 0.0) for e in edges if e in data)
    metres = sum(
        data[e].get("sampledSeconds", 0.0) * data[e].get("speed", 0.0) for e in edges if e in data
    )
    return round(metres / seconds * 3.6, 2) if seconds > 0 else None


def approach_vc(
    city: City, net: NetInfo, lanes: dict[str, dict[str, float]], *, window_s: float
) -> dict[str, float]:
    """Volume / capacity per signalized approach edge (the edge whose lanes the signal
    controls): its critical lane's, i.e. the highest over its lanes of the lane's flow /
    (saturation flow × the plan's green share for that lane)."""
    out: dict[str, float] = {}
    for spec in city.manifest.signals:
        tls = net.tls.get(spec.id)
        if tls is None or spec.cycle_s <= 0:
            continue
        green_s: dict[str, float] = {}
        for phase in spec.phases:
            if phase.kind != "green":
                continue
            served = {link.from_lane for link in tls.links if phase.state[link.index] in "Gg"}
            for lane in served:
                green_s[lane] = green_s.get(lane, 0.0) + phase.duration_s
        for lane, g in green_s.items():
            cap_vph = SATURATION_VPH_PER_LANE * g / spec.cycle_s
            if lane in lanes and cap_vph > 0:
                edge = lane.rsplit("_", 1)[0]
                x = lanes[lane].get("left", 0.0) * 3600.0 / window_s / cap_vph
                out[edge] = max(out.get(edge, 0.0), x)
    return out


def _main_edge(edge_id: str) -> str:
    """A left-turn pocket belongs to the road before it."""
    return edge_id.removesuffix("_pocket")


def trip_stops_per_km(tripinfo: Path, *, after_s: float) -> float | None:
    """Σ stops / Σ km over the trips that departed at or after ``after_s`` and arrived."""
    stops = 0.0
    metres = 0.0
    for _, el in ElementTree.iterparse(tripinfo):
        if el.tag != "tripinfo":
            continue
        if float(el.get("depart", "-1")) >= after_s and float(el.get("arrival", "-1")) >= 0:
            if el.get("vType", "") in ("ambulance", "fire_truck"):
                continue
            stops += float(el.get("waitingCount", "0"))
            metres += float(el.get("routeLength", "0"))
        el.clear()
    return round(stops / (metres / 1000.0), 3) if metres > 0 else None


def peak_figures(
    city: City,
    edge_data: Path,
    tripinfo: Path,
    *,
    warmup_s: float,
    window_s: float,
) -> dict[str, Any]:
    """The check's figures for one run (see the module's docstring)."""
    net = city.net
    lanes = read_lane_data(edge_data)
    data = edges_of(lanes)
    edges = [e for e in data if e in net.edges]
    arterials = [e for e in edges if edge_class(city, net, _main_edge(e)) in ARTERIAL_CLASSES]
    vc = approach_vc(city, net, lanes, window_s=window_s)
    vc_art = sorted(v for e, v in vc.items()
                    if edge_class(city, net, _main_edge(e)) in ARTERIAL_CLASSES)  # fmt: skip
    # an approach: the controlled edge, and the road before it when that edge is its
    # left-turn pocket (queues reach back onto it); vehicles are counted at the stop line
    approaches = [e for e in vc if e in data]
    vehicles = sum(data[e].get("left", 0.0) for e in approaches)
    loss = sum(data[e].get("timeLoss", 0.0) for e in approaches)
    loss += sum(
        data[_main_edge(e)].get("timeLoss", 0.0)
        for e in approaches
        if e.endswith("_pocket") and _main_edge(e) in data
    )
    return {
        "arterial_speed_kph": _space_mean_kph(data, arterials),
        "network_speed_kph": _space_mean_kph(data, edges),
        "vc_p90": round(float(np.percentile(vc_art, 90)), 3) if vc_art else None,
        "vc_max": round(max(vc_art), 3) if vc_art else None,
        "stops_per_km": trip_stops_per_km(tripinfo, after_s=warmup_s),
        "intersection_delay_s": round(loss / vehicles, 2) if vehicles > 0 else None,
    }


@dataclass(frozen=True)
class PeakCase:
    """One run of the check and where its edge data goes."""

    request: RunRequest
    edge_data: Path


def peak_cases(
    city: City,
    *,
    period: str,
    seeds: Sequence[int],
    work_dir: Path,
    scale: float = 1.0,
    duration_s: float = DEFAULT_DURATION_S,
    warmup_s: float = DEFAULT_WARMUP_S,
    owner: str | None = None,
    control: str = "fixed",
) -> list[PeakCase]:
    """The runs of the check: background demand only, one per seed."""
    if not 0 <= warmup_s < duration_s:
        raise RunError(
            f"check-peak: warmup_s must be in [0, duration_s = {duration_s:g}) (got {warmup_s:g})."
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for seed in seeds:
        spec = parse_scenario(
            {
                "name": f"check-peak-{period}",
                "kind": "baseline",
                "description": f"Peak check of {city.name}: background traffic only.",
                "seed": seed,
                "demand": {"period": period, "scale": scale},
                "sim": {"duration_s": duration_s},
                "control": {"default": control},
            },
            source="twin city check-peak",
        )
        out = work_dir / f"edges-{city.name}-{period}-x{scale:g}-{control}-s{seed}.xml"
        add = edge_data_additional(
            work_dir / f"{out.stem}.add.xml", out, begin_s=warmup_s, end_s=duration_s
        )
        cases.append(PeakCase(run_request(spec, city, seed=seed, owner=owner,
                                          extra_additional=(add,)), out))  # fmt: skip
    return cases


def case_figures(
    city: City, case: PeakCase, record: RunRecord, *, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """The check's figures of one finished run (the run's own metrics beside them)."""
    if record.status != "done" or record.run_dir is None:
        raise RunError(f"check-peak run {record.id} failed: {record.error}")
    figures = peak_figures(
        city,
        case.edge_data,
        record.run_dir / "tripinfo.xml",
        warmup_s=warmup_s,
        window_s=duration_s - warmup_s,
    )
    metrics = record.metrics or {}
    figures["mean_delay_s"] = metrics.get("mean_delay_s")
    figures["teleports"] = metrics.get("teleports")
    return figures


def summarize_figures(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of every figure, and whether each target is met."""
    keys = [*PEAK_TARGETS, "vc_max", "mean_delay_s", "teleports"]
    out: dict[str, Any] = {}
    for key in keys:
        values = [f[key] for f in per_seed if f.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["targets"] = {k: list(v) for k, v in PEAK_TARGETS.items()}
    out["met"] = {
        k: (out[k] is not None and lo <= out[k] <= hi) for k, (lo, hi) in PEAK_TARGETS.items()
    }
    out["all_met"] = all(out["met"].values())
    return out


def check_peak(
    settings: Settings,
    city: City,
    *,
    period: str,
    seeds: Sequence[int],
    work_dir: Path,
    scale: float = 1.0,
    duration_s: float = DEFAULT_DURATION_S,
    warmup_s: float = DEFAULT_WARMUP_S,
    workers: int | None = None,
    progress: RunProgress | None = None,
    control: str = "fixed",
) -> dict[str, Any]:
    """Run the check (one recorded run per seed) and return the medians and targets."""
    cases = peak_cases(
        city, period=period, seeds=seeds, work_dir=work_dir, scale=scale,
        duration_s=duration_s, warmup_s=warmup_s, control=control,
    )  # fmt: skip
    records = run_requests(
        settings, execute_request, [c.request for c in cases], workers=workers, progress=progress
    )
    per_seed = [
        case_figures(city, c, r, warmup_s=warmup_s, duration_s=duration_s)
        for c, r in zip(cases, records, strict=True)
    ]
    out = summarize_figures(per_seed)
    out["per_seed"] = per_seed
    out["seeds"] = list(seeds)
    out["period"] = period
    out["scale"] = scale
    out["city"] = city.name
    if any(math.isnan(v) for f in per_seed for v in f.values() if isinstance(v, float)):
        raise RunError("check-peak: a figure came out NaN; see the runs' folders.")
    return out
