"""Calibrate a city's demand to detector counts; the result is a named demand variant.

The recipe (SUMO's route sampling on the city's own OD model):

1. **Candidates.** Trips sampled from the OD model of the period, ``candidates_factor``
   times its volume over the counted window, routed once by ``duarouter`` on free-flow
   times (with the time each route reaches each street).
2. **Route sampling.** SUMO's ``routeSampler.py`` draws candidate routes as often as
   the OD model has them (``--weighted``) until every counting site (a street,
   :mod:`city_models.counts`) and interval holds its count, then ``--optimize 1``
   re-weights them with a linear program (each route may gain or lose one vehicle)
   whose objective also charges every vehicle (``--minimize-vehicles``): of two ways to
   explain the same counts it prefers fewer vehicles that pass several sites to more
   vehicles that each pass one, so a vehicle is not counted twice. Sampling alone
   leaves too many vehicles on short routes; ``--optimize full`` (a program over every
   candidate, free of the sample) too few on long ones. The counts alone cannot tell
   how many vehicles there are (fewer on longer routes explain them as well), so
   (``total_from_entries``, the default) routeSampler is given, per cell, the sum of
   entry counts (below) as the total to reach (``--total-count``); if the check's total
   flow is then off by more than :data:`RESCALE_ABOVE`, the routes are sampled once more
   with those totals scaled by the flow error. ``--mismatch-output`` is kept.
   Intervals are cut into cells of one length (the common divisor of the intervals);
   counts are shared evenly among an interval's cells, in whole vehicles. A warm-up
   (``warmup_s``, at the first interval's rates) and a cool-down (``cooldown_s``, at
   the last's) are sampled too, so the network is as full at the window's edges as in
   its middle.
3. **Departure times.** routeSampler draws a vehicle's departure inside the cell it is
   sampled for, but the loops see it later: each vehicle departs earlier by the time it
   takes to reach its counted streets (the mean over them), first from the free-flow
   times, then (``refine``) from the times measured in a first run of the calibrated
   demand.
4. **Check.** The calibrated demand runs in SUMO with the same loops, and every site and
   interval is compared with its count (GEH on hourly flows). Accepted, as the FHWA
   Toolbox / WebTAG rule, when GEH < 5 on at least 85 % of them, the total flow is
   within 5 % of the counted total, and the vehicle count is plausible: the vehicles
   generated for the window against the **sum of entry counts** (each site's count
   times the share of the OD model's routes through it that are counted there first:
   at a site on the network's edge that share is 1; for the synthetic district, whose
   trips start everywhere, it is what turns counts into distinct vehicles). A good GEH
   reached with many times the vehicles is the known trap this guards against.

The variant is stored in ``<city>/demands/<name>/`` (routes, the report, the counts as
read, routeSampler's mismatch output) and reused while the city, the counts and the
options are the same. A scenario runs it with ``demand.variant = "<name>"``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import re
import shutil
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from city_models.build import City
from city_models.counts import CountingSite, CountRow, Counts, Loop, lane_edge
from city_models.demand import PERIODS, VTYPES_XML, sample_trips, write_trips
from twin.engine.metrics import geh
from twin.engine.sumo_tools import iter_xml_elements, run_python_tool, run_tool
from twin.errors import CityError, ScenarioError
from twin.streams import stream

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
CALIBRATE_VERSION = "2"
DEMANDS_DIR = "demands"
ROUTES_FILE = "routes.rou.xml"
RESCALE_ABOVE = 0.04
"""With ``total_from_entries``: a total flow off by more than this share is corrected by
sampling once more with the vehicles scaled by it."""
REPORT_FILE = "calibration.json"
COUNTS_FILE = "counts.csv"
MISMATCH_FILE = "mismatch.xml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"

GEH_OK = 5.0
"""A site and interval fit when the GEH of its hourly flows is below this."""
SITES_SHARE_OK = 0.85
"""The share of sites and intervals that must fit."""
TOTAL_FLOW_OK_PCT = 5.0
"""The simulated total over every site and interval, within this of the counted total."""
VEHICLES_RATIO_OK = (0.5, 1.5)
"""Generated vehicles / sum of entry counts: a plausible demand lies in this range (above
it vehicles are counted twice; below it too few vehicles drive implausibly long routes)."""


def _no_progress(_msg: str) -> None:
    return None


@dataclass(frozen=True)
class CalibrationOptions:
    """How to calibrate (every field enters the variant's cache key).

    Parameters
    ----------
    period
        The OD model's period whose routes are the candidates (``am_peak`` ...).
    seed
        Seed of the candidates, the route sampling, the vehicle types and SUMO.
    candidates_factor
        Candidate trips, as a multiple of the OD model's volume over the window.
    optimize
        routeSampler's ``--optimize``: ``"full"`` (a linear program over every
        candidate route) or a whole number (each sampled route's count may change by
        at most that many), or ``"none"`` (sampling only).
    minimize_vehicles
        routeSampler's ``--minimize-vehicles`` in [0, 1): the cost of one vehicle
        against one vehicle of mismatch in the linear program.
    weighted
        routeSampler's ``--weighted``: draw routes by how often the OD model has them.
    warmup_s, cooldown_s
        Demand sampled before the first and after the last interval (at their rates).
    refine
        Place departures from a first run's measured times (one more SUMO run).
    teleport_s
        SUMO's ``--time-to-teleport`` in the check runs (as the scenarios' default).
    total_from_entries
        Give routeSampler the sum of entry counts of each cell as the number of vehicles
        to reach (``--total-count``), corrected once by the check's flow error.
    """

    period: str = "am_peak"
    seed: int = 1
    candidates_factor: float = 5.0
    optimize: str = "1"
    minimize_vehicles: float = 0.1
    weighted: bool = True
    warmup_s: float = 600.0
    cooldown_s: float = 600.0
    refine: bool = True
    teleport_s: float = 300.0
    total_from_entries: bool = True

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise CityError(
                f"Calibration option 'period' is {self.period!r}; allowed: {', '.join(PERIODS)}."
            )
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**31:
            raise CityError(f"Calibration option 'seed' is {self.seed!r}; allowed: 0 .. 2^31-1.")
        if not 1.0 <= self.candidates_factor <= 50.0:
            raise CityError(
                f"Calibration option 'candidates_factor' is {self.candidates_factor!r}; "
                "allowed: 1 .. 50."
            )
        if self.optimize not in ("full", "none") and not self.optimize.isdigit():
            raise CityError(
                f"Calibration option 'optimize' is {self.optimize!r}; allowed: 'full', "
                "'none' or a whole number."
            )
        if not 0.0 <= self.minimize_vehicles < 1.0:
            raise CityError(
                f"Calibration option 'minimize_vehicles' is {self.minimize_vehicles!r}; "
                "allowed: 0 <= value < 1."
            )
        for name in ("warmup_s", "cooldown_s"):
            value = getattr(self, name)
            if not 0.0 <= value <= 3600.0:
                raise CityError(f"Calibration option {name!r} is {value!r}; allowed: 0 .. 3600.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class SiteFit:
    """One counting site (a street) and interval: counted, simulated, GEH (hourly)."""

    site: str
    begin_s: float
    end_s: float
    counted_veh: float
    simulated_veh: float
    geh: float


@dataclass(frozen=True)
class CalibrationReport:
    """How well a calibrated demand reproduces the counts, and whether it is accepted."""

    fits: tuple[SiteFit, ...]
    geh_lt5_share: float
    counted_total_veh: float
    simulated_total_veh: float
    total_flow_err_pct: float
    vehicles_generated: int
    entry_count_veh: float
    vehicles_ratio: float
    checks: dict[str, bool]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return all(self.checks.values())

    def summary(self) -> dict[str, Any]:
        """The figures without the per-site table."""
        return {
            "accepted": self.accepted,
            "checks": dict(self.checks),
            "sites": len({f.site for f in self.fits}),
            "site_intervals": len(self.fits),
            "geh_lt5_share": round(self.geh_lt5_share, 4),
            "counted_total_veh": round(self.counted_total_veh, 1),
            "simulated_total_veh": round(self.simulated_total_veh, 1),
            "total_flow_err_pct": round(self.total_flow_err_pct, 2),
            "vehicles_generated": self.vehicles_generated,
            "entry_count_veh": round(self.entry_count_veh, 1),
            "vehicles_ratio": round(self.vehicles_ratio, 3),
            **self.extra,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "fits": [asdict(f) for f in self.fits]}


def fit_report(
    counted: Mapping[tuple[str, float, float], float],
    simulated: Mapping[tuple[str, float, float], float],
    *,
    vehicles_generated: int,
    entry_count_veh: float,
    extra: Mapping[str, Any] | None = None,
) -> CalibrationReport:
    """Compare simulated with counted vehicles per site and interval.

    Parameters
    ----------
    counted, simulated
        Vehicles per ``(site, begin_s, end_s)``; a key missing from ``simulated`` is 0.
    vehicles_generated
        Vehicles the calibrated demand has for the counted window.
    entry_count_veh
        The sum of entry counts (what the counts say about distinct vehicles).
    """
    if not counted:
        raise CityError("A calibration report needs at least one counted site and interval.")
    fits = []
    for (site, b, e), c in sorted(counted.items()):
        m = float(simulated.get((site, b, e), 0.0))
        per_h = 3600.0 / (e - b)
        fits.append(
            SiteFit(site, b, e, round(c, 2), round(m, 2), round(geh(m * per_h, c * per_h), 3))
        )
    share = sum(f.geh < GEH_OK for f in fits) / len(fits)
    counted_total = float(sum(counted.values()))
    sim_total = float(sum(simulated.get(k, 0.0) for k in counted))
    err_pct = 100.0 * (sim_total - counted_total) / counted_total if counted_total > 0 else math.nan
    ratio = vehicles_generated / entry_count_veh if entry_count_veh > 0 else math.nan
    lo, hi = VEHICLES_RATIO_OK
    checks = {
        "geh_lt5_share": share >= SITES_SHARE_OK,
        "total_flow": math.isfinite(err_pct) and abs(err_pct) <= TOTAL_FLOW_OK_PCT,
        "vehicles_plausible": math.isfinite(ratio) and lo <= ratio <= hi,
    }
    return CalibrationReport(
        fits=tuple(fits), geh_lt5_share=share, counted_total_veh=counted_total,
        simulated_total_veh=sim_total, total_flow_err_pct=err_pct,
        vehicles_generated=vehicles_generated, entry_count_veh=entry_count_veh,
        vehicles_ratio=ratio, checks=checks, extra=dict(extra or {}),
    )  # fmt: skip


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class DemandVariant:
    """A calibrated demand stored with its city."""

    name: str
    path: Path
    period: str
    begin_s: float
    end_s: float
    report: dict[str, Any]

    @property
    def routes_path(self) -> Path:
        return self.path / ROUTES_FILE

    @property
    def accepted(self) -> bool:
        return bool(self.report.get("accepted"))


def demand_variants(city: City) -> list[str]:
    """Names of the demand variants stored with ``city``."""
    root = city.path / DEMANDS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / REPORT_FILE).is_file())


def load_demand_variant(city: City, name: str) -> DemandVariant:
    """The demand variant ``name`` of ``city``.

    Raises
    ------
    ScenarioError
        When the city has no such variant (the message lists those it has).
    """
    folder = city.path / DEMANDS_DIR / name
    meta_path = folder / REPORT_FILE
    if not re.match(NAME_PATTERN, name) or not meta_path.is_file():
        have = demand_variants(city)
        raise ScenarioError(
            f"Demand variant {name!r} does not exist in city {city.name} ({city.path}); "
            f"allowed: {', '.join(map(repr, have)) if have else 'none yet'}. Make one with "
            f"'twin calibrate --city {city.path} --counts COUNTS.csv --name {name}'."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        period, begin_s, end_s = str(meta["period"]), float(meta["begin_s"]), float(meta["end_s"])
        report = dict(meta["report"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ScenarioError(
            f"Demand variant {name!r} of city {city.name}: {meta_path} is damaged ({exc}); "
            "calibrate it again with 'twin calibrate ... --force'."
        ) from exc
    if not (folder / ROUTES_FILE).is_file():
        raise ScenarioError(f"Demand variant {name!r} of city {city.name} lost {ROUTES_FILE}.")
    return DemandVariant(name, folder, period, begin_s, end_s, report)


def variant_key(city: City, counts: Counts, options: CalibrationOptions) -> str:
    """Cache key of a calibration: the city's content, the counts and the options."""
    rows = sorted((r.site, r.begin_s, r.end_s, r.count_veh) for r in counts.rows)
    blob = json.dumps(
        {"city": city.manifest.content_hash, "rows": rows, "options": options.to_dict(),
         "v": CALIBRATE_VERSION},
        sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def calibrate_demand(
    city: City,
    counts: Counts,
    *,
    name: str | None = None,
    options: CalibrationOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> DemandVariant:
    """Calibrate the city's demand to ``counts`` and store it as demand variant ``name``
    (default ``counts-<period>``); reuse a stored one with the same inputs.

    Raises
    ------
    CityError
        For a bad name or option, or when no candidate route passes any counting site.
    SumoError
        When duarouter, routeSampler or SUMO fail.
    """
    opts = options or CalibrationOptions()
    name = name or f"counts-{opts.period}"
    if not re.match(NAME_PATTERN, name):
        raise CityError(
            f"Demand variant name {name!r}; allowed: letters, digits, '_', '-', '.', "
            "at most 64, starting with a letter or digit."
        )
    if opts.optimize != "none" and importlib.util.find_spec("scipy") is None:
        raise CityError(
            "routeSampler's --optimize needs scipy, which is not installed; install the "
            "project's dependencies (pip install -e .) or use optimize='none'."
        )
    key = variant_key(city, counts, opts)
    root = city.path / DEMANDS_DIR
    out = root / name
    if not force and (out / REPORT_FILE).is_file():
        old = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
        if old.get("key") == key:
            log.info("reusing demand variant %s of city %s", name, city.name)
            return load_demand_variant(city, name)
    say = progress or _no_progress
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        meta = _calibrate_into(tmp, city, counts, opts, name=name, key=key, say=say)
        (tmp / REPORT_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n",
                                       encoding="utf-8")  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_demand_variant(city, name)


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class _Grid:
    """Cells of one length covering the warm-up, the counted window and the cool-down."""

    step_s: int
    origin_s: int  # first cell's begin (warm-up included; may be before 0)
    n_cells: int
    window: tuple[float, float]  # the counted window [first begin, last end)
    loop_period_s: int  # the loops' period: divides every cell bound, so runs from 0 align

    def cells(self) -> Iterator[tuple[int, int]]:
        for k in range(self.n_cells):
            b = self.origin_s + k * self.step_s
            yield b, b + self.step_s

    @property
    def end_s(self) -> int:
        return self.origin_s + self.n_cells * self.step_s


def _grid(counts: Counts, opts: CalibrationOptions) -> _Grid:
    t0, t1 = int(counts.begin_s), int(counts.end_s)
    bounds = {int(b) - t0 for iv in counts.intervals for b in iv}
    step = reduce(math.gcd, bounds - {0})
    if t0 < opts.warmup_s:
        log.warning("counts begin at %d s: the network starts empty at 0 s, so only %d s "
                    "of warm-up come before them", t0, t0)  # fmt: skip
    n_pre = math.ceil(opts.warmup_s / step)
    n_post = math.ceil(opts.cooldown_s / step)
    origin = t0 - n_pre * step
    return _Grid(step, origin, (t1 - origin) // step + n_post, (float(t0), float(t1)),
                 math.gcd(step, t0))  # fmt: skip


def _even_split(total: int, n: int) -> list[int]:
    return [((i + 1) * total) // n - (i * total) // n for i in range(n)]


def _cell_counts(counts: Counts, grid: _Grid) -> dict[tuple[int, int], dict[str, int]]:
    """Whole vehicles per cell and site: each interval's count shared evenly among its
    cells; warm-up and cool-down cells at a site's first and last interval's rate."""
    out: dict[tuple[int, int], dict[str, int]] = defaultdict(dict)
    step = grid.step_s
    first: dict[str, tuple[float, float, float]] = {}
    last: dict[str, tuple[float, float, float]] = {}
    for (site, b, e), c in counts.targets.items():
        n = int((e - b) // step)
        for k, v in enumerate(_even_split(round(c), n)):
            out[(int(b) + k * step, int(b) + (k + 1) * step)][site] = v
        if site not in first or b < first[site][0]:
            first[site] = (b, e, c)
        if site not in last or e > last[site][1]:
            last[site] = (b, e, c)
    t0, t1 = int(grid.window[0]), int(grid.window[1])
    pre = [(b, e) for b, e in grid.cells() if e <= t0]
    post = [(b, e) for b, e in grid.cells() if b >= t1]
    for cells, ref in ((pre, first), (post, last)):
        if not cells:
            continue
        for site, (b, e, c) in ref.items():
            total = round(c * len(cells) * step / (e - b))
            for cell, v in zip(cells, _even_split(total, len(cells)), strict=True):
                out[cell][site] = v
    return dict(out)


def _write_edgedata(cells: Mapping[tuple[int, int], Mapping[str, int]], path: Path) -> None:
    lines = ["<data>"]
    for (b, e), by_site in sorted(cells.items()):
        lines.append(f'  <interval id="counts" begin="{b}" end="{e}">')
        lines += [f'    <edge id="{s}" entered="{v}"/>' for s, v in sorted(by_site.items())]
        lines.append("  </interval>")
    lines.append("</data>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class _Route:
    edges: tuple[str, ...]
    offsets_s: dict[str, float]  # counted site -> seconds from departure (free flow)


def _passage_fraction(site: CountingSite, lengths: Mapping[str, float]) -> float:
    """Where along its street a site's loops sit (0 start .. 1 end), on average."""
    loops = [lp for g in site.groups for lp in g.loops]
    return statistics.fmean(min(lp.pos_m / max(lengths[lp.lane], 0.1), 1.0) for lp in loops)


def _site_times(
    edges: tuple[str, ...], depart_s: float, exits: list[float], fractions: Mapping[str, float]
) -> dict[str, float]:
    """Absolute time a vehicle passes each counted site of its route (first passage)."""
    out: dict[str, float] = {}
    enter = depart_s
    for edge, leave in zip(edges, exits, strict=False):
        if leave < 0:  # not reached (an unfinished vehicle)
            break
        if edge in fractions and edge not in out:
            out[edge] = enter + fractions[edge] * (leave - enter)
        enter = leave
    return out


def _candidates(
    city: City, grid: _Grid, opts: CalibrationOptions, work: Path,
    fractions: Mapping[str, float],
) -> tuple[Path, dict[tuple[str, ...], _Route], int, dict[tuple[str, ...], int]]:  # fmt: skip
    seed = int(stream(opts.seed, "calibrate/candidates").integers(2**31 - 1))
    trips = sample_trips(
        city.manifest.demand, period=opts.period, duration_s=float(grid.end_s - grid.origin_s),
        seed=seed, scale=opts.candidates_factor,
    )  # fmt: skip
    if not trips:
        raise CityError(f"The OD model of city {city.name} gives no trips in {opts.period}.")
    trips_path = write_trips(trips, work / "candidates.trips.xml")
    routed = work / "candidates.rou.xml"
    run_tool(
        "duarouter",
        ["-n", city.net_path, "--route-files", trips_path, "-o", routed,
         "--ignore-errors", "true", "--no-warnings", "true", "--no-step-log", "true",
         "--seed", str(opts.seed), "--exit-times", "true", "--alternatives-output", "NUL"],
        what=f"routing the calibration's candidate trips of city {city.name}",
    )  # fmt: skip
    routes: dict[tuple[str, ...], _Route] = {}
    multiplicity: dict[tuple[str, ...], int] = defaultdict(int)
    n = 0
    for depart, edges, exits in _iter_vehicles(routed):
        n += 1
        multiplicity[edges] += 1
        if edges not in routes:
            times = _site_times(edges, depart, exits, fractions)
            routes[edges] = _Route(edges, {s: t - depart for s, t in times.items()})
    return routed, routes, n, dict(multiplicity)


def _iter_vehicles(path: Path) -> Iterator[tuple[float, tuple[str, ...], list[float]]]:
    """(depart, route edges, exit times or []) of every vehicle of a route file."""
    for _event, el in ET.iterparse(path, events=("end",)):
        if el.tag != "vehicle":
            continue
        route = el.find("route")
        if route is not None:
            exits = route.get("exitTimes")
            yield (
                float(el.get("depart", "0")),
                tuple(route.get("edges", "").split()),
                [float(x) for x in exits.split()] if exits else [],
            )
        el.clear()


def _entry_share(
    routes: Mapping[tuple[str, ...], _Route], multiplicity: Mapping[tuple[str, ...], int]
) -> dict[str, float]:
    """Per site: of the candidate vehicles through it, the share counted there first."""
    through: dict[str, int] = defaultdict(int)
    first: dict[str, int] = defaultdict(int)
    for edges, route in routes.items():
        if not route.offsets_s:
            continue
        w = multiplicity[edges]
        for site in route.offsets_s:
            through[site] += w
        first[min(route.offsets_s, key=route.offsets_s.__getitem__)] += w
    return {s: first[s] / n for s, n in through.items()}


@dataclass
class _Vehicle:
    sampled_s: float  # routeSampler's departure (inside the cell it was sampled for)
    edges: tuple[str, ...]
    lead_s: float  # how much earlier it departs


def _run_sampler(
    candidates: Path,
    edgedata: Path,
    opts: CalibrationOptions,
    work: Path,
    keep: Path,
    *,
    totals: Sequence[int] = (),
) -> tuple[list[tuple[float, tuple[str, ...]]], str]:
    out = work / "sampled.rou.xml"
    args: list[str | Path] = [
        "-r", candidates, "-d", edgedata, "-o", out, "--mismatch-output", keep / MISMATCH_FILE,
        "--seed", str(opts.seed), "--min-count", "1", "--threads", "1",
    ]  # fmt: skip
    if totals:
        args += ["--total-count", ",".join(str(t) for t in totals)]
    if opts.weighted:
        args.append("--weighted")
    if opts.optimize != "none":
        args += ["--optimize", opts.optimize]
        if opts.minimize_vehicles > 0:
            args += ["--minimize-vehicles", f"{opts.minimize_vehicles:g}"]
    text = run_python_tool(
        "routeSampler.py", args, what="sampling routes to match the counts", cwd=work
    )
    said = [ln.strip() for ln in text.splitlines() if "Wrote" in ln]
    sampled = [(d, e) for d, e, _ in _iter_vehicles(out)] if out.exists() else []
    return sampled, "; ".join(said[-3:])


def _write_routes(
    vehicles: list[_Vehicle], path: Path, *, seed: int, truck_share: float
) -> tuple[float, int]:
    """Write the vehicles at their placed departures; those placed before 0 s are left
    out (SUMO starts with an empty network). Returns the earliest departure and how many
    vehicles were written."""
    rng = stream(seed, "calibrate/vehicle_types")
    trucks = rng.random(len(vehicles)) < truck_share
    placed = sorted((round(v.sampled_s - v.lead_s, 2), i) for i, v in enumerate(vehicles))
    kept = [(d, i) for d, i in placed if d >= 0.0]
    with path.open("w", encoding="utf-8") as fh:
        fh.write("<routes>\n")
        fh.write(VTYPES_XML)
        for depart, i in kept:
            vtype = "truck" if trucks[i] else "car"
            fh.write(
                f'  <vehicle id="cal{i}" type="{vtype}" depart="{depart:.2f}" '
                f'departLane="best" departSpeed="max">\n'
                f'    <route edges="{" ".join(vehicles[i].edges)}"/>\n  </vehicle>\n'
            )
        fh.write("</routes>\n")
    return (kept[0][0] if kept else 0.0), len(kept)


def _loops_xml(sites: Mapping[str, CountingSite], *, period_s: int, out: str) -> str:
    seen: dict[str, Loop] = {}
    for site in sites.values():
        for group in site.groups:
            for lp in group.loops:
                seen.setdefault(lp.id, lp)
    lines = ["<additional>"]
    lines += [
        f'  <inductionLoop id="{lp.id}" lane="{lp.lane}" pos="{lp.pos_m}" '
        f'period="{period_s}" file="{out}"/>'
        for lp in seen.values()
    ]
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _SimResult:
    loop_counts: dict[tuple[str, int], float]  # (loop id, cell begin) -> vehicles
    passages: dict[str, dict[str, float]]  # vehicle id -> site -> time it passed


def _simulate(
    city: City, counts: Counts, grid: _Grid, routes: Path, *, begin_s: int, seed: int,
    teleport_s: float, work: Path, tag: str,
) -> _SimResult:  # fmt: skip
    add = work / f"loops_{tag}.add.xml"
    loops_out = f"loops_{tag}.xml"
    add.write_text(
        _loops_xml(counts.sites, period_s=grid.loop_period_s, out=loops_out),
        encoding="utf-8",
    )
    vehroutes = work / f"vehroutes_{tag}.xml"
    run_tool(
        "sumo",
        ["-n", city.net_path, "-r", routes, "-a", add, "-b", str(begin_s),
         "-e", str(grid.end_s), "--seed", str(seed),
         "--time-to-teleport", f"{teleport_s:g}", "--ignore-route-errors", "true",
         "--no-step-log", "true", "--no-warnings", "true", "--duration-log.disable", "true",
         "--vehroute-output", vehroutes, "--vehroute-output.exit-times", "true",
         "--vehroute-output.write-unfinished", "true"],
        what=f"checking the calibrated demand of city {city.name} ({tag})", cwd=work,
    )  # fmt: skip
    loop_counts: dict[tuple[str, int], float] = defaultdict(float)
    for el in iter_xml_elements(work / loops_out, "interval"):
        loop_counts[(el["id"], round(float(el["begin"])))] += float(el["nVehContrib"])
    fractions = {s: _passage_fraction(site, city.net.lane_lengths_m)
                 for s, site in counts.sites.items()}  # fmt: skip
    passages: dict[str, dict[str, float]] = {}
    for _event, el in ET.iterparse(vehroutes, events=("end",)):
        if el.tag == "vehicle":
            route = el.find("route")
            exits = route.get("exitTimes") if route is not None else None
            if route is not None and exits:
                edges = tuple(route.get("edges", "").split())
                times = [float(x) for x in exits.split()]
                passages[el.get("id", "")] = _site_times(
                    edges, float(el.get("depart", "0")), times, fractions
                )
            el.clear()
    return _SimResult(dict(loop_counts), passages)


def measured_counts(
    counts: Counts, loop_counts: Mapping[tuple[str, int], float], *, step_s: int
) -> dict[tuple[str, float, float], float]:
    """Per site and interval, what the loops measured, aggregated as the counts were (a
    group's loops summed, the groups of a site averaged)."""
    out: dict[tuple[str, float, float], float] = {}
    for site, b, e in counts.targets:
        site_info = counts.sites[site]
        cells = range(int(b), int(e), step_s)
        sums = [
            sum(loop_counts.get((lp.id, c), 0.0) for lp in g.loops for c in cells)
            for g in site_info.groups
        ]
        out[(site, b, e)] = sum(sums) / len(sums)
    return out


def _calibrate_into(
    folder: Path, city: City, counts: Counts, opts: CalibrationOptions, *, name: str,
    key: str, say: Progress,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    work = folder / "work"
    work.mkdir()
    grid = _grid(counts, opts)
    fractions = {s: _passage_fraction(site, city.net.lane_lengths_m)
                 for s, site in counts.sites.items()}  # fmt: skip
    say(f"sampling and routing candidate trips ({opts.period}, × {opts.candidates_factor:g})")
    cand_path, routes, n_candidates, multiplicity = _candidates(city, grid, opts, work, fractions)
    unreached = sorted(set(counts.sites) - {s for r in routes.values() for s in r.offsets_s})
    if len(unreached) == len(counts.sites):
        raise CityError(
            f"No candidate route of city {city.name}'s OD model ({opts.period}) passes any "
            "counting site; are the counts for this city?"
        )
    if unreached:
        log.warning("no candidate route passes %d counting site(s): %s", len(unreached),
                    ", ".join(unreached[:10]))  # fmt: skip
    cells = _cell_counts(counts, grid)
    edgedata = work / "counts.dat.xml"
    _write_edgedata(cells, edgedata)
    say(f"routeSampler on {len(routes)} distinct routes, {len(cells)} cells of {grid.step_s} s")
    shares = _entry_share(routes, multiplicity)
    totals = (
        [round(sum(c * shares.get(site, 1.0) for site, c in cells[cell].items()))
         for cell in sorted(cells)]
        if opts.total_from_entries else []
    )  # fmt: skip
    t0, t1 = grid.window
    routes_path = folder / ROUTES_FILE
    truck_share = city.manifest.demand.truck_share
    sim_seed = int(stream(opts.seed, "calibrate/sumo").integers(2**31 - 1))

    def attempt(totals: list[int]) -> tuple[list[_Vehicle], _SimResult, str, int, int]:
        """Sample the routes (to ``totals`` vehicles per cell, if given), place their
        departures, check them in SUMO (twice with ``refine``)."""
        sampled, said = _run_sampler(cand_path, edgedata, opts, work, folder, totals=totals)
        if not sampled:
            raise CityError(f"routeSampler chose no route for the counts ({said}).")
        vehicles = [
            _Vehicle(d, edges,
                     _mean_lead(routes[edges].offsets_s.values() if edges in routes else ()))
            for d, edges in sampled
        ]  # fmt: skip

        def place_and_check(tag: str) -> tuple[_SimResult, int, int]:
            first, n_written = _write_routes(vehicles, routes_path, seed=opts.seed,
                                             truck_share=truck_share)  # fmt: skip
            begin_s = _sim_begin(grid, first)
            result = _simulate(city, counts, grid, routes_path, begin_s=begin_s, seed=sim_seed,
                               teleport_s=opts.teleport_s, work=work, tag=tag)  # fmt: skip
            return result, n_written, begin_s

        say("checking the calibrated demand in SUMO")
        result, n_written, begin_s = place_and_check("first")
        if opts.refine:
            _refine_leads(vehicles, result.passages, _placed_departs(routes_path), routes)
            say("checking the refined departures in SUMO")
            result, n_written, begin_s = place_and_check("final")
        return vehicles, result, said, n_written, begin_s

    vehicles, result, sampler_said, n_written, begin_s = attempt(totals)
    rescaled = 1.0
    if totals:
        # the entry counts give the number of vehicles, not where they are counted: if
        # the check's total flow is off, the vehicles are scaled once by the flow error
        sim = measured_counts(counts, result.loop_counts, step_s=grid.loop_period_s)
        counted, got = sum(counts.targets.values()), sum(sim.values())
        if got > 0 and abs(got / counted - 1.0) > RESCALE_ABOVE:
            rescaled = counted / got
            say(f"total flow {100 * (got / counted - 1):+.1f} %: sampling again with the "
                f"vehicles × {rescaled:.3f}")  # fmt: skip
            vehicles, result, sampler_said, n_written, begin_s = attempt(
                [round(t * rescaled) for t in totals]
            )
    simulated = measured_counts(counts, result.loop_counts, step_s=grid.loop_period_s)
    entry = sum(c * shares.get(site, 1.0) for (site, _b, _e), c in counts.targets.items())
    in_window = sum(t0 <= v.sampled_s < t1 for v in vehicles)
    seen = sum(any(t0 <= t < t1 for t in p.values()) for p in result.passages.values())
    report = fit_report(
        counts.targets, simulated, vehicles_generated=in_window, entry_count_veh=entry,
        extra={
            "vehicles_total": n_written,
            "vehicles_counted_in_sim": seen,
            "distinct_routes": len({v.edges for v in vehicles}),
            "candidate_trips": n_candidates,
            "candidate_routes": len(routes),
            "sites_without_candidates": unreached,
            "route_sampler": sampler_said,
            "cell_s": grid.step_s,
            "sim_begin_s": begin_s,
            "vehicles_rescaled": round(rescaled, 4),
            "runtime_s": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    _write_counts_csv(counts, folder / COUNTS_FILE)
    shutil.rmtree(work)
    lo, hi = VEHICLES_RATIO_OK
    say(
        f"GEH<{GEH_OK:g} on {100 * report.geh_lt5_share:.1f} % of site-intervals, total "
        f"{report.total_flow_err_pct:+.1f} %, vehicles / entry counts "
        f"{report.vehicles_ratio:.2f} (plausible {lo:g}-{hi:g})"
    )
    return {
        "name": name, "key": key, "city": city.name, "city_content_hash":
        city.manifest.content_hash, "period": opts.period, "begin_s": t0, "end_s": t1,
        "counts_source": counts.source, "options": opts.to_dict(),
        "version": CALIBRATE_VERSION, "report": _json_safe(report.as_dict()),
    }  # fmt: skip


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _mean_lead(offsets: Any) -> float:
    vals = list(offsets)
    return float(statistics.fmean(vals)) if vals else 0.0


def _sim_begin(grid: _Grid, first_depart_s: float) -> int:
    """The check run's begin: at the first departure, on the loops' period (they
    aggregate from the run's begin)."""
    return int(first_depart_s // grid.loop_period_s) * grid.loop_period_s


def _placed_departs(routes_path: Path) -> dict[str, float]:
    return {el["id"]: float(el["depart"]) for el in iter_xml_elements(routes_path, "vehicle")}


def _refine_leads(
    vehicles: list[_Vehicle],
    passages: Mapping[str, Mapping[str, float]],
    placed: Mapping[str, float],
    routes: Mapping[tuple[str, ...], _Route],
) -> None:
    """Each vehicle's lead from the times it took to reach its counted sites in the first
    run (from its planned departure, so waiting to enter counts too); a vehicle that
    did not pass them all keeps its free-flow lead scaled by the run's median slow-down."""
    ratios: list[float] = []
    measured: dict[int, float] = {}
    for i, v in enumerate(vehicles):
        vid = f"cal{i}"
        times = passages.get(vid)
        free = routes[v.edges].offsets_s
        if not times or vid not in placed or len(times) < len(free):
            continue  # not inserted, or the run ended before it passed all its sites
        measured[i] = statistics.fmean(t - placed[vid] for t in times.values())
        free_s = [free[s] for s in times if s in free]
        if free_s and statistics.fmean(free_s) > 1.0:
            ratios.append(measured[i] / statistics.fmean(free_s))
    slow = statistics.median(ratios) if ratios else 1.0
    for i, v in enumerate(vehicles):
        v.lead_s = measured.get(i, v.lead_s * slow)


def _write_counts_csv(counts: Counts, path: Path) -> None:
    lines = ["site,begin_s,end_s,count"]
    lines += [f"{r.site},{r.begin_s:g},{r.end_s:g},{r.count_veh:g}" for r in counts.rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- known demand


def simulate_loop_counts(
    city: City,
    routes: Path,
    *,
    begin_s: int,
    end_s: int,
    interval_s: int,
    seed: int,
    work: Path,
    teleport_s: float = 300.0,
) -> list[CountRow]:
    """What every loop of the city counts in ``[begin_s, end_s)``, per ``interval_s``,
    when SUMO runs ``routes`` from time 0 (counts of a known demand: the tests and the
    benchmark calibrate against them).

    Raises
    ------
    CityError
        For a window that is not a whole number of intervals.
    """
    if interval_s <= 0 or begin_s < 0 or end_s <= begin_s or (end_s - begin_s) % interval_s:
        raise CityError(
            f"Loop counts over [{begin_s}, {end_s}) per {interval_s} s: allowed: a window "
            "from >= 0 s of a whole number of intervals."
        )
    period = math.gcd(begin_s, interval_s)  # the loops aggregate from 0 s
    add = work / "loops_known.add.xml"
    lines = ["<additional>"]
    lines += [
        f'  <inductionLoop id="{d.id}" lane="{d.lane}" pos="{d.pos_m}" period="{period}" '
        f'file="loops_known.xml"/>'
        for d in city.manifest.detectors
    ]
    add.write_text("\n".join([*lines, "</additional>"]) + "\n", encoding="utf-8")
    run_tool(
        "sumo",
        ["-n", city.net_path, "-r", routes, "-a", add, "-b", "0", "-e", str(end_s),
         "--seed", str(seed), "--time-to-teleport", f"{teleport_s:g}",
         "--ignore-route-errors", "true", "--no-step-log", "true", "--no-warnings", "true",
         "--duration-log.disable", "true"],
        what=f"counting a known demand on the loops of city {city.name}", cwd=work,
    )  # fmt: skip
    total: dict[tuple[str, int], float] = defaultdict(float)
    for el in iter_xml_elements(work / "loops_known.xml", "interval"):
        b = round(float(el["begin"]))
        if begin_s <= b < end_s:
            k = begin_s + (b - begin_s) // interval_s * interval_s
            total[(el["id"], k)] += float(el["nVehContrib"])
    return [CountRow(i, float(b), float(b + interval_s), c) for (i, b), c in sorted(total.items())]


def perturb_counts(
    rows: list[CountRow],
    city: City,
    *,
    seed: int,
    boosted_share: float = 0.2,
    boost: float = 1.2,
    noise: float = 0.05,
) -> list[CountRow]:
    """Counts as a field would report a known demand: ``boost`` times on a share of the
    streets (every loop of a boosted street alike), and normal noise of ``noise`` on each
    loop; whole vehicles, never negative."""
    street = {d.id: lane_edge(d.lane) for d in city.manifest.detectors}
    rng = stream(seed, "calibrate/perturb")
    streets = sorted({street.get(r.site, r.site) for r in rows})
    n_boosted = round(boosted_share * len(streets))
    boosted = {streets[k] for k in rng.choice(len(streets), size=n_boosted, replace=False)}
    out = []
    for r in rows:
        factor = (boost if street.get(r.site, r.site) in boosted else 1.0) * rng.normal(1, noise)
        out.append(CountRow(r.site, r.begin_s, r.end_s, float(max(0, round(r.count_veh * factor)))))
    return out
