"""A/B and multi-seed studies: variants x seeds, one recorded run each, one table.

``twin run ev_priority --vary mode=none,field,center --seeds 1-10`` and
``--set sim.duration_s=600`` come here. Every case is a :class:`RunRequest` run by the
executor's :class:`~twin.engine.executors.Pool` (the runner the benchmarks and, later,
sweeps use: one executor, several front doors), every run is a record.

Common random numbers: every variant runs the same seeds, and a run's seed drives all
its named random streams (demand, the phone's GPS, drivers' choices), so a difference
between two variants at one seed is the variants' doing, not the dice's. Differences
against the first variant are therefore paired by seed, and their confidence interval
is that of the paired differences (Student's t, 95 %).
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scenarios.loader import parse_scenario
from scenarios.spec import ScenarioSpec
from twin.errors import ConfigError

# a scenario kind's headline metrics, shown first
HEADLINES: dict[str, tuple[str, ...]] = {
    "baseline": ("mean_delay_s", "mean_travel_time_s", "throughput_veh", "teleports"),
    "ev_priority": ("ev_s_per_km", "ev_time_to_hospital_s", "ev_stopped_s", "mean_delay_s"),
    "vms_diversion": (
        "mean_delay_s",
        "diverted_share",
        "incident_queue_max_veh",
        "throughput_veh",
    ),
    "evacuation": (
        "zone_clearance_s",
        "network_clearance_s",
        "mean_evacuation_time_s",
        "shelter_share",
    ),
}
# Student's t, two-sided 95 %, by degrees of freedom (1..30); the normal's 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96


def parse_value(text: str) -> Any:
    """A command-line value as TOML reads it (``600`` -> 600, ``true``, ``[1, 2]``,
    ``"08:10"``); anything TOML can't read is a plain string (``center``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(text: str, *, option: str) -> tuple[str, str]:
    """``a.b=value`` -> (``"a.b"``, ``"value"``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"{option} {text!r}: expected FIELD=VALUE, e.g. sim.duration_s=600 (a dotted "
            "path into the scenario, as in its TOML file)."
        )
    return key.strip(), value.strip()


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b] = value`` for ``path`` ``a.b`` (list items by index: ``evs.0.id``)."""
    parts = path.split(".")
    node: Any = raw
    for k, part in enumerate(parts[:-1]):
        key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        try:
            nxt = node[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(node, dict):
                nxt = node[key] = {}
            else:
                raise ConfigError(
                    f"--set/--vary {path!r}: {'.'.join(parts[: k + 1])!r} is not in the "
                    "scenario (a list item is given by its index, e.g. evs.0.dispatch_s)."
                ) from None
        node = nxt
    last: Any = int(parts[-1]) if isinstance(node, list) and parts[-1].isdigit() else parts[-1]
    try:
        node[last] = value
    except (IndexError, TypeError):
        raise ConfigError(f"--set/--vary {path!r}: cannot set {parts[-1]!r} there.") from None


def with_overrides(
    spec: ScenarioSpec, overrides: Sequence[tuple[str, Any]], *, source: str
) -> ScenarioSpec:
    """The spec with dotted-path overrides, validated again (the same messages as a
    scenario file: the field, the value, what is allowed)."""
    if not overrides:
        return spec
    raw = copy.deepcopy(spec.model_dump(mode="json", exclude_unset=True))
    raw.setdefault("kind", spec.kind)
    raw.setdefault("name", spec.name)
    for path, value in overrides:
        set_path(raw, path, value)
    return parse_scenario(raw, source=source)


def parse_seeds(text: str) -> list[int]:
    """``"1-10"``, ``"1,2,5"`` or ``"3"`` -> the seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        try:
            lo = int(a)
            hi = int(b) if sep else lo
        except ValueError:
            raise ConfigError(
                f"--seeds {text!r}: expected seeds as 1-10, 1,2,5 or 3 (whole numbers >= 0)."
            ) from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"--seeds {text!r}: a range must go up from 0 or more ({part}).")
        seeds += range(lo, hi + 1)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is given twice.")
    return seeds


@dataclass(frozen=True)
class Variant:
    """One combination of ``--vary`` values."""

    label: str
    overrides: tuple[tuple[str, Any], ...]


def variants_of(vary: Sequence[str]) -> list[Variant]:
    """``["mode=none,field,center", "recovery=smooth,immediate"]`` -> the cartesian
    product of the values, in the order given (the first variant is the reference)."""
    axes: list[list[tuple[str, Any]]] = []
    for item in vary:
        path, values = parse_assignment(item, option="--vary")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if len(choices) < 1:
            raise ConfigError(f"--vary {item!r}: give one or more values, comma-separated.")
        axes.append([(path, parse_value(v)) for v in choices])
    if not axes:
        return [Variant("as given", ())]
    out = []
    for combo in itertools.product(*axes):
        label = " ".join(f"{p.rsplit('.', 1)[-1]}={v}" for p, v in combo)
        out.append(Variant(label, tuple(combo)))
    return out


@dataclass
class Summary:
    """One metric of one variant over seeds."""

    n: int
    mean: float
    sd: float
    ci95: float  # half-width
    diff_mean: float | None = None  # paired, against the first variant
    diff_ci95: float | None = None
    values: list[float] = field(default_factory=list)


def summarize(values: Sequence[float]) -> Summary:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan)
    mean = statistics.fmean(vals)
    sd = statistics.stdev(vals) if n > 1 else math.nan
    ci = t975(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return Summary(n, mean, sd, ci, values=vals)


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float]:
    """Mean and 95 % CI half-width of b - a over the seeds both have."""
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    diffs = [b[s] - a[s] for s in seeds]
    if not diffs:
        return math.nan, math.nan
    s = summarize(diffs)
    return s.mean, s.ci95


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are numbers (booleans and nested tables left out)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def study_table(
    kind: str,
    results: dict[str, dict[int, dict[str, Any]]],
    *,
    metrics: Sequence[str] = (),
) -> dict[str, dict[str, Summary]]:
    """Per variant (label -> seed -> metrics), per metric: the summary over seeds and the
    paired difference against the first variant."""
    labels = list(results)
    names = list(dict.fromkeys([*metrics, *HEADLINES.get(kind, ())]))
    if not names:
        first = next(iter(results[labels[0]].values()), {})
        names = sorted(numeric_metrics(first))[:8]
    table: dict[str, dict[str, Summary]] = {}
    ref = labels[0]
    for label in labels:
        row: dict[str, Summary] = {}
        for name in names:
            by_seed = {s: numeric_metrics(m).get(name, math.nan) for s, m in results[label].items()}
            summary = summarize(list(by_seed.values()))
            if label != ref:
                base = {s: numeric_metrics(m).get(name, math.nan) for s, m in results[ref].items()}
                summary.diff_mean, summary.diff_ci95 = paired(base, by_seed)
            row[name] = summary
        table[label] = row
    return table
