"""Detector counts for calibration: read, check, and put onto the city's edges.

A counts table has one row per counting site and interval::

    site,begin_s,end_s,count
    e1u_n3_4-n4_4_0,600,1500,112
    n3_4-n4_4,600,1500,230

``site`` is a loop of the city (``city.json`` ``detectors``: ``e1s_*`` at the stop line,
``e1u_*`` upstream) or a street (an edge id of the net); ``begin_s`` / ``end_s`` are
seconds after the start of the demand period (the scenario clock's zero), whole seconds;
``count`` is the vehicles that passed in the interval. CSV or Parquet; other columns are
ignored. :func:`read_counts` checks everything before SUMO starts: columns, types,
finite and non-negative values, known sites, intervals that are either the same or do
not overlap, one row per site and interval, and that the loops of a street come
complete (see below). Every error names the file, the row, the field, the value and what
is allowed.

Routes choose streets; SUMO chooses lanes. So a counting site of the calibration is a
street: the loops of one kind on it (its stop-line loops, or its upstream loops) are
summed over its lanes, and when a street has loops of two kinds, or loops and a street
count, their sums are averaged. A street's loops of one kind must therefore all be
given for an interval (a missing lane would read as a lane without traffic); give the
street's id instead when only its total is known. Live mode's counts
(:func:`counts_from_loops`) drop an incomplete street for the interval instead, with a
warning, as a loop that failed to report is normal there.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from city_models.build import City
from twin.errors import CityError

log = logging.getLogger(__name__)

COUNT_COLUMNS = ("site", "begin_s", "end_s", "count")
"""The columns a counts table must have."""
STREET_KIND = "street"
"""The kind of a street count (a site that is an edge id)."""
MAX_COUNT_VPH = 3000.0
"""The highest flow a loop (per lane) or a street (per lane) may report, vehicles/h."""

Partial = Literal["error", "drop"]


@dataclass(frozen=True)
class CountRow:
    """One validated row: ``count_veh`` vehicles passed ``site`` in ``[begin_s, end_s)``."""

    site: str
    begin_s: float
    end_s: float
    count_veh: float


@dataclass(frozen=True)
class Loop:
    """A loop that measures a counting site: the city's own, or one the calibration places
    on every lane of a street given by its id."""

    id: str
    lane: str
    pos_m: float


@dataclass(frozen=True)
class SiteGroup:
    """The loops of one kind on a street: their counts are summed."""

    kind: str  # "stopline", "upstream" or "street"
    loops: tuple[Loop, ...]


@dataclass(frozen=True)
class CountingSite:
    """A street the calibration matches: its loop groups (averaged) and the ids given."""

    edge: str
    groups: tuple[SiteGroup, ...]
    given_as: tuple[str, ...]


@dataclass(frozen=True)
class Counts:
    """Counts ready to calibrate against: counting sites (streets), intervals, targets.

    ``targets[(edge, begin_s, end_s)]`` is the street's count in the interval (the mean
    over its groups of the sum of their loops).
    """

    source: str
    rows: tuple[CountRow, ...]
    sites: dict[str, CountingSite]
    intervals: tuple[tuple[float, float], ...]
    targets: dict[tuple[str, float, float], float]

    @property
    def total_veh(self) -> float:
        """Sum of the street counts over every site and interval."""
        return float(sum(self.targets.values()))

    @property
    def begin_s(self) -> float:
        return self.intervals[0][0]

    @property
    def end_s(self) -> float:
        return self.intervals[-1][1]


class LoopCountLike(Protocol):
    """What live mode ingests from a loop (:class:`twin.app.live.ingest.Count`)."""

    @property
    def loop(self) -> str: ...
    @property
    def t_end_s(self) -> float: ...
    @property
    def interval_s(self) -> float: ...
    @property
    def count_veh(self) -> int: ...


# --------------------------------------------------------------------------- reading


def read_counts(path: Path, city: City) -> Counts:
    """Read and check a counts file (``.csv`` or ``.parquet``) for ``city``.

    Raises
    ------
    CityError
        Naming the file, the row, the field, the value and what is allowed, for a
        missing file or column, a bad value, an unknown site, overlapping intervals, a
        repeated row, or a street whose loops are not all given for an interval.
    """
    if not path.is_file():
        raise CityError(f"Counts file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise CityError(
            f"Counts file {path}: format {suffix or '(no suffix)'!r} is not read; "
            "allowed: .csv or .parquet with columns " + ", ".join(COUNT_COLUMNS) + "."
        )
    import pandas as pd  # noqa: PLC0415 - deliberately lazy: only the reader needs it

    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype={"site": str}, skipinitialspace=True)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise CityError(f"Counts file {path} could not be read: {exc}") from exc
    first_line = 2 if suffix == ".csv" else 1  # the header is line 1 of a CSV file
    label = "line {}" if suffix == ".csv" else "row {}"
    records = _records(frame, path=str(path), first_line=first_line, label=label)
    return check_counts(records, city, source=str(path), label=label, first_line=first_line)


def _records(frame: Any, *, path: str, first_line: int, label: str) -> list[CountRow]:
    columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in COUNT_COLUMNS if c not in columns]
    if missing:
        raise CityError(
            f"Counts file {path}: column(s) {', '.join(missing)} missing (found: "
            f"{', '.join(columns) or 'none'}); required: {', '.join(COUNT_COLUMNS)}."
        )
    if len(frame) == 0:
        raise CityError(f"Counts file {path} has no rows; at least one count is required.")
    frame = frame.set_axis(columns, axis=1)
    rows: list[CountRow] = []
    for k, rec in enumerate(frame[list(COUNT_COLUMNS)].itertuples(index=False)):
        where = f"Counts file {path}, {label.format(k + first_line)}"
        site = rec[0]
        if not isinstance(site, str) or not site.strip():
            raise CityError(f"{where}: field 'site' is {site!r}; a loop or street id is required.")
        begin = _number(rec[1], where=where, field="begin_s", whole=True)
        end = _number(rec[2], where=where, field="end_s", whole=True)
        count = _number(rec[3], where=where, field="count", whole=False)
        rows.append(CountRow(site.strip(), begin, end, count))
    return rows


def _number(value: Any, *, where: str, field: str, whole: bool) -> float:
    allowed = "a whole number of seconds >= 0" if whole else "a number of vehicles >= 0"
    if isinstance(value, bool) or value is None:
        raise CityError(f"{where}: field {field!r} is {value!r}; allowed: {allowed}.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CityError(f"{where}: field {field!r} is {value!r}; allowed: {allowed}.") from None
    if not math.isfinite(x) or x < 0 or (whole and x != round(x)):
        raise CityError(f"{where}: field {field!r} is {value!r}; allowed: {allowed}.")
    return x


def check_counts(
    rows: Sequence[CountRow],
    city: City,
    *,
    source: str,
    partial: Partial = "error",
    label: str = "row {}",
    first_line: int = 1,
) -> Counts:
    """Check ``rows`` against ``city`` and put them onto its streets.

    Parameters
    ----------
    rows
        The counts, each a site (loop or edge id), an interval and a count.
    source
        What the rows came from, for messages (a file name, "live counts").
    partial
        A street whose loops of one kind are not all given for an interval: ``"error"``
        (a file) or ``"drop"`` (live counts: that street and interval are left out).
    """
    if not rows:
        raise CityError(f"Counts {source}: no counts; at least one is required.")
    loops = {d.id: d for d in city.manifest.detectors}
    edges = city.net.edges
    by_group: dict[tuple[str, str], set[str]] = defaultdict(set)  # (edge, kind) -> loop ids
    for d in city.manifest.detectors:
        by_group[(lane_edge(d.lane), d.kind)].add(d.id)

    def where(k: int) -> str:
        return f"Counts {source}, {label.format(k + first_line)}"

    intervals: dict[tuple[float, float], int] = {}
    seen: dict[tuple[str, float, float], int] = {}
    for k, r in enumerate(rows):
        if r.site not in loops and r.site not in edges:
            hint = _close_ids(r.site, [*loops, *edges])
            raise CityError(
                f"{where(k)}: field 'site' is {r.site!r}, which is neither a loop nor a "
                f"street of city {city.name}; allowed: a loop id of city.json 'detectors' "
                f"(e.g. {next(iter(loops), '-')!r}) or an edge id of its net{hint}."
            )
        if not (math.isfinite(r.begin_s) and r.begin_s >= 0 and r.begin_s == round(r.begin_s)):
            raise CityError(
                f"{where(k)}: field 'begin_s' is {r.begin_s!r}; allowed: a whole number "
                "of seconds >= 0 (seconds after the start of the demand period)."
            )
        if not (math.isfinite(r.end_s) and r.end_s == round(r.end_s)) or r.end_s <= r.begin_s:
            raise CityError(
                f"{where(k)}: field 'end_s' is {r.end_s!r}, not after begin_s "
                f"{r.begin_s:g}; allowed: whole seconds, end_s > begin_s."
            )
        if not (math.isfinite(r.count_veh) and r.count_veh >= 0):
            raise CityError(
                f"{where(k)}: field 'count' is {r.count_veh!r}; allowed: a number of vehicles >= 0."
            )
        if r.count_veh > _max_count(r, loops, edges):
            raise CityError(
                f"{where(k)}: field 'count' is {r.count_veh:g} vehicles in "
                f"{r.end_s - r.begin_s:g} s at {r.site!r}; allowed: at most "
                f"{MAX_COUNT_VPH:g} vehicles/h per lane."
            )
        key = (r.site, r.begin_s, r.end_s)
        if key in seen:
            raise CityError(
                f"{where(k)}: site {r.site!r} in [{r.begin_s:g}, {r.end_s:g}) is counted "
                f"again (first at {label.format(seen[key] + first_line)}); allowed: one "
                "row per site and interval."
            )
        seen[key] = k
        intervals.setdefault((r.begin_s, r.end_s), k)
    ordered = sorted(intervals)
    for (b0, e0), (b1, e1) in itertools.pairwise(ordered):
        if b1 < e0:
            raise CityError(
                f"Counts {source}: interval [{b1:g}, {e1:g}) at "
                f"{label.format(intervals[(b1, e1)] + first_line)} overlaps "
                f"[{b0:g}, {e0:g}) at {label.format(intervals[(b0, e0)] + first_line)}; "
                "allowed: every site counts over the same intervals, or intervals that do "
                "not overlap."
            )
    return _onto_streets(rows, city, loops=loops, by_group=by_group, source=source,
                         partial=partial, intervals=tuple(ordered))  # fmt: skip


def _max_count(r: CountRow, loops: dict[str, Any], edges: dict[str, Any]) -> float:
    lanes = 1 if r.site in loops else max(edges[r.site].lanes, 1)
    return MAX_COUNT_VPH * lanes * (r.end_s - r.begin_s) / 3600.0


def _close_ids(site: str, ids: Iterable[str]) -> str:
    import difflib  # noqa: PLC0415 - only for an error message

    near = difflib.get_close_matches(site, list(ids), n=3, cutoff=0.75)
    return f" (did you mean {', '.join(map(repr, near))}?)" if near else ""


def lane_edge(lane: str) -> str:
    """The edge of a lane id (``E_k`` -> ``E``; edge ids may hold ``_`` themselves)."""
    return lane.rsplit("_", 1)[0]


def street_loops(city: City, edge: str) -> tuple[Loop, ...]:
    """Loops the calibration places to count a street given by its id: one per lane,
    half-way along it."""
    info = city.net.edges[edge]
    return tuple(
        Loop(f"cal_{edge}_{k}", f"{edge}_{k}", round(city.net.lane_lengths_m[f"{edge}_{k}"] / 2, 2))
        for k in range(info.lanes)
    )


def _onto_streets(
    rows: Sequence[CountRow],
    city: City,
    *,
    loops: dict[str, Any],
    by_group: dict[tuple[str, str], set[str]],
    source: str,
    partial: Partial,
    intervals: tuple[tuple[float, float], ...],
) -> Counts:
    # (edge, kind, begin, end) -> {site: count}
    cells: dict[tuple[str, str, float, float], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r.site in loops:
            d = loops[r.site]
            edge, kind = lane_edge(d.lane), d.kind
        else:
            edge, kind = r.site, STREET_KIND
        cells[(edge, kind, r.begin_s, r.end_s)][r.site] = r.count_veh
    sums: dict[tuple[str, float, float], list[float]] = defaultdict(list)
    used: dict[str, set[tuple[str, str]]] = defaultdict(set)  # edge -> (kind, given id)
    for (edge, kind, b, e), given in sorted(cells.items()):
        if kind != STREET_KIND:
            lacking = sorted(by_group[(edge, kind)] - set(given))
            if lacking:
                msg = (
                    f"Counts {source}: street {edge!r} in [{b:g}, {e:g}) has its {kind} "
                    f"loop(s) {', '.join(sorted(given))} but not {', '.join(lacking)}; a "
                    "street's loops of one kind are summed over its lanes, so give all of "
                    f"them, or give the street's total under site {edge!r}."
                )
                if partial == "error":
                    raise CityError(msg)
                log.warning("%s (left out)", msg)
                continue
        sums[(edge, b, e)].append(sum(given.values()))
        used[edge].update((kind, s) for s in given)
    if not sums:
        raise CityError(f"Counts {source}: no street is completely counted in any interval.")
    sites: dict[str, CountingSite] = {}
    for edge, kinds in sorted(used.items()):
        groups = []
        for kind in sorted({k for k, _ in kinds}):
            if kind == STREET_KIND:
                groups.append(SiteGroup(kind, street_loops(city, edge)))
            else:
                ids = sorted(by_group[(edge, kind)])
                group = tuple(Loop(i, loops[i].lane, loops[i].pos_m) for i in ids)
                groups.append(SiteGroup(kind, group))
        sites[edge] = CountingSite(edge, tuple(groups), tuple(sorted(s for _, s in kinds)))
    targets = {key: float(sum(v) / len(v)) for key, v in sorted(sums.items())}
    kept = tuple(iv for iv in intervals if any(k[1:] == iv for k in targets))
    return Counts(source=source, rows=tuple(rows), sites=sites, intervals=kept, targets=targets)


# --------------------------------------------------------------------------- live counts


def counts_from_loops(
    counts: Iterable[LoopCountLike],
    city: City,
    *,
    window_end_s: float,
    window_s: float,
    interval_s: float,
    period_start_s: float | None = None,
) -> Counts:
    """Live mode's loop counts over a rolling window, as counts to calibrate against.

    Counts whose interval lies inside ``[window_end_s - window_s, window_end_s)`` (live
    clock seconds) are summed per loop into intervals of ``interval_s`` that end at
    ``window_end_s``; a count that straddles an interval boundary goes to the interval of
    its end. Times become seconds after ``period_start_s`` (the calibration's time
    line; default: the window's start, so the window reads ``[0, window_s)``). A street
    whose loops did not all report in an interval is left out for that interval.

    Raises
    ------
    CityError
        For a window or interval that is not a positive whole number of seconds, a
        window that is not a multiple of the interval, or no usable count.
    """
    for name, value in (("window_s", window_s), ("interval_s", interval_s)):
        if not (math.isfinite(value) and value >= 1.0 and value == round(value)):
            raise CityError(f"Live counts: {name} = {value!r}; allowed: whole seconds >= 1.")
    if window_s % interval_s:
        raise CityError(
            f"Live counts: window_s = {window_s:g} is not a multiple of interval_s = "
            f"{interval_s:g}; allowed: window_s = n × interval_s."
        )
    start = window_end_s - window_s
    zero = start if period_start_s is None else period_start_s
    total: dict[tuple[str, int], float] = defaultdict(float)
    for c in counts:
        t_begin = c.t_end_s - c.interval_s
        if t_begin < start - 1e-6 or c.t_end_s > window_end_s + 1e-6:
            continue  # outside the window
        k = min(int((c.t_end_s - start - 1e-6) // interval_s), int(window_s // interval_s) - 1)
        total[(c.loop, k)] += float(c.count_veh)
    rows = []
    for (loop, k), count in sorted(total.items()):
        b = round(start - zero + k * interval_s)
        rows.append(CountRow(loop, float(b), float(b + interval_s), count))
    if not rows:
        raise CityError(
            f"Live counts: no loop count ends in the window [{start:g}, {window_end_s:g}); "
            "nothing to calibrate against."
        )
    return check_counts(rows, city, source="live counts", partial="drop")
