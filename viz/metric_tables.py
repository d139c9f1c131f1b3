"""A run's metrics as a reader sees them: grouped (network / scenario / signals / guard),
with units from the name's suffix, a one-line glossary entry each, and nested metrics
(per-signal queues, per-EV and per-incident dicts) as tables of their top rows.

Everything here returns escaped HTML fragments or plain strings; no plotting.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tomli_w

TOP_ROWS = 10
"""Rows shown of a nested metric (largest values first); the rest is counted in a note."""

GROUPS = ("network", "scenario", "signals", "guard")

# longest suffix first: `_s_per_km` before `_km` and `_s`, `_veh_s` before `_s`, `_km2`
# before `_km`
_SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_s_per_km", "s/km"),
    ("_veh_s", "veh·s"),
    ("_vph", "veh/h"),
    ("_km2", "km²"),
    ("_kph", "km/h"),
    ("_kmh", "km/h"),
    ("_mps", "m/s"),
    ("_share", "%"),
    ("_pct", "%"),
    ("_veh", "veh"),
    ("_km", "km"),
    ("_h", "h"),
    ("_m", "m"),
    ("_s", "s"),
)


@dataclass(frozen=True)
class Term:
    """A glossary entry: the group a metric belongs to, what it means, and a unit where
    the name's suffix does not say it (counts)."""

    group: str
    text: str
    unit: str = ""


_NET, _SCN, _SIG, _GRD = GROUPS

GLOSSARY: dict[str, Term] = {
    # network: SUMO's tripinfo / statistics over all trips
    "throughput_veh": Term(_NET, "Trips that arrived by the end of the run."),
    "unfinished_veh": Term(_NET, "Trips still in the network (or not yet in) at the end."),
    "mean_travel_time_s": Term(_NET, "Mean duration of the arrived trips."),
    "mean_delay_s": Term(_NET, "Mean time lost against free-flow speed per arrived trip."),
    "mean_depart_delay_s": Term(_NET, "Mean wait to enter the network after the planned time."),
    "total_delay_h": Term(_NET, "Time lost against free flow, summed over all trips."),
    "mean_stops": Term(_NET, "Mean number of stops (halts) per trip.", "stops/veh"),
    "mean_waiting_s": Term(_NET, "Mean time standing (speed < 0.1 m/s) per trip."),
    "mean_route_length_m": Term(_NET, "Mean length of the driven routes."),
    "vehicles_loaded": Term(_NET, "Vehicles SUMO loaded from the demand.", "veh"),
    "vehicles_inserted": Term(_NET, "Vehicles that entered the network.", "veh"),
    "vehicles_running": Term(_NET, "Vehicles still driving when the run ended.", "veh"),
    "vehicles_waiting": Term(_NET, "Vehicles still waiting to enter at the end.", "veh"),
    "teleports": Term(_NET, "Vehicles SUMO teleported out of a deadlock (all causes).", "veh"),
    "teleports_jam": Term(_NET, "Teleports because of a jam.", "veh"),
    "teleports_yield": Term(_NET, "Teleports of vehicles stuck yielding.", "veh"),
    "teleports_wrongLane": Term(_NET, "Teleports of vehicles stuck on a wrong lane.", "veh"),
    "sim_end_s": Term(_NET, "Simulation time at which the run ended."),
    # signals
    "max_queue_veh": Term(_SIG, "Largest queue at any signal in any sample."),
    "mean_queue_veh": Term(_SIG, "Mean queue over signals and samples."),
    "max_queue_by_tls_veh": Term(_SIG, "Largest queue per signal (signal id -> veh)."),
    "controllers": Term(_SIG, "Signals per controller kind.", "signals"),
    "max_pressure_switches": Term(_SIG, "Stage switches decided by max pressure.", "switches"),
    "cross_street_max_queue_veh": Term(
        _SIG, "Largest cross-street queue at a signal while it held green for an EV."
    ),
    "recovery_mean_s": Term(_SIG, "Mean time for a signal to return to its plan after an EV."),
    "evacuation_signals_max": Term(
        _SIG, "Most signals giving evacuation greens at once.", "signals"
    ),
    # guard
    "guard_commands": Term(_GRD, "Commands that went through the signal safety guard.", "cmds"),
    "guard_late_changes": Term(_GRD, "Commands the guard applied late (min green etc.).", "cmds"),
    "guard_interventions": Term(
        _GRD, "Requests the guard changed beyond rounding to whole seconds.", "events"
    ),
    "guard_interventions_by_kind": Term(
        _GRD,
        "The guard's changes by kind (min green raised or extended, yellow kept, ...).",
        "events",
    ),
    "guard_roundings": Term(_GRD, "Timings only rounded to whole seconds (<= 0.5 s).", "events"),
    "approach_queue_max_veh": Term(
        _SIG, "Largest halting queue per approach (signal/edge), read every control tick."
    ),
    "approach_queue_max_m": Term(
        _SIG, "Largest queue length per approach from the stop line (estimate)."
    ),
    "approach_delay_s": Term(_SIG, "SUMO's time loss per vehicle on each approach."),
    "approach_los": Term(_SIG, "HCM level of service per approach from its delay (A-F).", ""),
    "guard_handed_back": Term(_GRD, "Signals the guard handed back to their plan.", "signals"),
    # EV priority
    "ev_mode": Term(_SCN, "How EV priority was given: none, field (roadside) or center."),
    "ev_arrived": Term(_SCN, "Emergency vehicles that reached the hospital.", "EVs"),
    "ev_time_to_hospital_s": Term(_SCN, "Mean EV trip time, dispatch to hospital, less on scene."),
    "ev_s_per_km": Term(_SCN, "Mean EV trip time per km driven (lower is faster)."),
    "ev_stops": Term(_SCN, "Mean stops per EV (not counting the scene).", "stops/EV"),
    "ev_stopped_s": Term(_SCN, "Mean time an EV stood still (not counting the scene)."),
    "ev_preempted_signals": Term(_SCN, "Signals turned green ahead of the EVs.", "signals"),
    "ev_conflicts": Term(_SCN, "Priority requests lost to another EV's hold.", "conflicts"),
    "ev_lane_clear_asked_veh": Term(_SCN, "Vehicles a sign asked to clear the EV's lane."),
    "ev": Term(_SCN, "Per EV: arrival, trip time, distance, stops, signals preempted."),
    # VMS diversion
    "vms_enabled": Term(_SCN, "Whether the variable message signs were on."),
    "vms_signs": Term(_SCN, "Signs the center drove.", "signs"),
    "vms_messages": Term(_SCN, "Messages shown, by message kind.", "messages"),
    "affected_veh": Term(_SCN, "Drivers who read a sign about the incident ahead."),
    "diverted_veh": Term(_SCN, "Affected drivers who took the detour."),
    "diverted_share": Term(_SCN, "Share of the affected drivers who took the detour."),
    "replanned_on_travel_time_veh": Term(_SCN, "Drivers who rerouted on a travel-time sign."),
    "detour_trip_s": Term(_SCN, "Mean trip time from the sign to arrival, detoured drivers."),
    "closed_route_trip_s": Term(_SCN, "Mean trip time from the sign, drivers who stayed."),
    "detour_arrived_veh": Term(_SCN, "Detoured drivers who arrived (the mean's sample)."),
    "closed_route_arrived_veh": Term(_SCN, "Drivers who stayed and arrived (the mean's sample)."),
    "unreachable_veh": Term(_SCN, "Vehicles removed: no way to their destination."),
    "police_diverted_veh": Term(_SCN, "Vehicles sent round by the police at the scene."),
    "incident_throughput_veh": Term(_SCN, "Vehicles past the (first) incident while it lasted."),
    "incident_queue_max_veh": Term(_SCN, "Largest queue upstream of the (first) incident."),
    "incident_queue_mean_veh": Term(_SCN, "Mean queue upstream of the (first) incident."),
    "recovery_s": Term(_SCN, "Time after the incident until its queue was back to normal."),
    "incidents": Term(_SCN, "Per incident: edge, throughput, queue, recovery, detection."),
    # evacuation
    "evacuees_veh": Term(_SCN, "Evacuating vehicles in the plan."),
    "zone_area_km2": Term(_SCN, "Area of the evacuated zone."),
    "zone_clearance_s": Term(_SCN, "Warning until the last evacuee left the zone."),
    "network_clearance_s": Term(_SCN, "Warning until the last evacuee arrived at a shelter."),
    "zone_left_share": Term(_SCN, "Share of evacuees out of the zone at the end."),
    "shelter_share": Term(_SCN, "Share of evacuees admitted to a shelter."),
    "reached_shelter_veh": Term(_SCN, "Evacuees who arrived at a shelter."),
    "mean_evacuation_time_s": Term(_SCN, "Mean trip time of the evacuees who arrived."),
    "mean_time_to_leave_zone_s": Term(_SCN, "Mean time from departure to leaving the zone."),
    "not_departed_veh": Term(_SCN, "Evacuees who had not left home at the end."),
    "stuck_veh": Term(_SCN, "Evacuees still on the road at the end."),
    "not_reaching_shelter_veh": Term(_SCN, "Evacuees who did not reach a shelter."),
    "left_without_shelter_veh": Term(_SCN, "Evacuees turned away from full shelters."),
    "shelter_capacity_veh": Term(_SCN, "Capacity per shelter."),
    "shelter_occupancy_veh": Term(_SCN, "Occupancy per shelter at the end."),
    "contraflow_edges": Term(_SCN, "Edges run in contraflow.", "edges"),
    "network": Term(_SCN, "The network variant the evacuation ran on."),
    "evacuated_share_curve": Term(
        _SCN, "Share of evacuees out of the zone every 5 min (t [s], share)."
    ),
}


def unit(name: str) -> str:
    """The unit of metric ``name``: the glossary's for counts, else from its suffix
    (``ev_s_per_km`` -> ``s/km``, ``zone_area_km2`` -> ``km²``), else ``""``."""
    term = GLOSSARY.get(name)
    if term is not None and term.unit:
        return term.unit
    for suffix, u in _SUFFIX_UNITS:
        if name.endswith(suffix) or name == suffix[1:]:
            return u
    return ""


def group(name: str, kind: str = "") -> str:
    """The group of metric ``name``: the glossary's, else by prefix, else ``scenario``."""
    term = GLOSSARY.get(name)
    if term is not None:
        return term.group
    if name.startswith("guard_"):
        return _GRD
    if name.startswith(
        ("max_queue", "mean_queue", "signal", "adaptive_", "max_pressure", "approach_")
    ):
        return _SIG
    if name.startswith(("teleports", "vehicles_")):
        return _NET
    return _SCN if kind != "baseline" else _NET


def fmt(value: Any, u: str = "") -> str:
    """A value for the page: thousands separators for ints, 2 decimals for floats,
    shares (unit ``%``) as percent, NaN as ``n/a``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if u == "%":
            v *= 100.0
            return f"{v:,.1f}"
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1e4 else f"{v:,.2f}"
    return str(value)


def _row(cells: Sequence[str], num_from: int) -> str:
    return (
        "<tr>"
        + "".join(
            f"<td{' class=num' if i >= num_from else ''}>{c}</td>" for i, c in enumerate(cells)
        )
        + "</tr>"
    )


def html_table(
    rows: Sequence[Sequence[str]], head: Sequence[str], *, num_from: int = 99, cls: str = ""
) -> str:
    """An HTML table; cells must already be escaped; columns from ``num_from`` on are
    right-aligned numbers."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(_row(r, num_from) for r in rows)
    c = f" class='{cls}'" if cls else ""
    return f"<table{c}><tr>{th}</tr>{body}</table>"


def _head(name: str) -> str:
    u = unit(name)
    return html.escape(f"{name} [{u}]" if u else name)


def _sort_key(v: Any) -> float:
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        f = float(v)
        return -f if not math.isnan(f) else math.inf
    return math.inf


def nested_table(name: str, value: Any, *, top: int = TOP_ROWS) -> str:
    """A nested metric as a table of its first ``top`` rows (largest values first for a
    map of numbers) with a note of how many there are."""
    e = html.escape
    note = ""
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
        cols: list[str] = []
        for inner in value.values():
            cols.extend(str(k) for k in inner if str(k) not in cols)
        keys = list(value)
        shown = keys[:top]
        rows = [[e(str(k))] + [e(fmt(value[k].get(c), unit(c))) for c in cols] for k in shown]
        table = html_table(rows, ["id", *(_head(c) for c in cols)], num_from=1, cls="nested")
        total = len(keys)
    elif isinstance(value, Mapping):
        u = unit(name)
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[1]))
        rows = [[e(str(k)), e(fmt(v, u))] for k, v in items[:top]]
        table = html_table(
            rows, ["key", e(f"value [{u}]" if u else "value")], num_from=1, cls="nested"
        )
        total = len(items)
        if total > top:
            note = f"top {top} of {total:,} by value (largest first)"
    elif isinstance(value, list | tuple):
        items_l = list(value)
        if items_l and all(isinstance(v, list | tuple) for v in items_l):
            width = max(len(v) for v in items_l)
            head = ["#", *(f"value {i + 1}" for i in range(width))]
            rows = [[str(i + 1), *(e(fmt(x)) for x in v)] for i, v in enumerate(items_l[:top])]
        else:
            head = ["#", "item"]
            rows = [[str(i + 1), e(fmt(v))] for i, v in enumerate(items_l[:top])]
        table = html_table(rows, head, num_from=1, cls="nested")
        total = len(items_l)
    else:
        return e(fmt(value))
    if total > top and not note:
        note = f"first {top} of {total:,}"
    if not note:
        note = f"{total:,} rows"
    return f"{table}<div class='note'>{e(note)}</div>"


def is_nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def metrics_html(metrics: Mapping[str, Any], kind: str = "") -> str:
    """The metrics section: one table per group (metric, value, unit, meaning), each
    nested metric as its own small table below its group."""
    e = html.escape
    if not metrics:
        return "<p>No metrics.</p>"
    parts: list[str] = []
    for g in GROUPS:
        names = [k for k in metrics if group(str(k), kind) == g]
        if not names:
            continue
        flat = [k for k in names if not is_nested(metrics[k])]
        nested = [k for k in names if is_nested(metrics[k])]
        parts.append(f"<h3 class='group'>{e(g.capitalize())}</h3>")
        rows = []
        for k in flat:
            name = str(k)
            u = unit(name)
            term = GLOSSARY.get(name)
            rows.append([e(name), e(fmt(metrics[k], u)), e(u), e(term.text if term else "")])
        if rows:
            parts.append(
                html_table(
                    rows,
                    ["Metric", "Value", "Unit", "Meaning"],
                    num_from=1,
                    cls=f"metrics metrics-{g}",
                )
            )
        for k in nested:
            name = str(k)
            term = GLOSSARY.get(name)
            meaning = f" — {e(term.text)}" if term else ""
            parts.append(f"<h4>{e(name)}{meaning}</h4>" + nested_table(name, metrics[k]))
    return "".join(parts)


def _tomlable(value: Any) -> Any:
    """The spec without None (TOML has no null) and with plain containers."""
    if isinstance(value, Mapping):
        return {str(k): _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_tomlable(v) for v in value if v is not None]
    return value


def spec_toml(spec: Mapping[str, Any] | None) -> str:
    """The spec that ran, as TOML (keys left unset are left out); ``""`` if none."""
    if not spec:
        return ""
    try:
        return tomli_w.dumps(_tomlable(spec))
    except (TypeError, ValueError):  # a value TOML cannot hold: a readable dump instead
        return "\n".join(f"{k} = {v!r}" for k, v in spec.items())
