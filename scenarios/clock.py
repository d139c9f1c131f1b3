"""Clock times where people think in them: ``dispatch = "08:10"`` beside ``dispatch_s``.

A run's simulated time 0 is the start of its demand period (``am_peak`` 08:00,
``pm_peak`` 18:00, ``midday`` 12:00, ``night`` 02:00: :data:`city_models.demand.PERIODS`),
so a clock time ``HH:MM[:SS]`` is that many seconds after it. These fields take one:

- ``evs[k].dispatch`` -> ``evs[k].dispatch_s`` (ev_priority, vms_diversion);
- ``incidents[k].start`` / ``.end`` -> ``start_s`` / ``end_s`` (vms_diversion);
- ``warning`` -> ``warning_s`` (evacuation).

Giving both forms of one field, a malformed time, or a time before the period starts is
one paragraph naming the file, the field, the value and what is allowed.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from city_models.demand import PERIODS
from twin.errors import ScenarioError

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
# (list field or None for the top level, clock key, seconds key)
CLOCK_FIELDS: tuple[tuple[str | None, str, str], ...] = (
    ("evs", "dispatch", "dispatch_s"),
    ("incidents", "start", "start_s"),
    ("incidents", "end", "end_s"),
    (None, "warning", "warning_s"),
)


def clock_s(text: object) -> int | None:
    """``"08:10"`` -> 29400 (seconds of the day); ``None`` if it is not ``HH:MM[:SS]``."""
    if not isinstance(text, str):
        return None
    m = _CLOCK.match(text.strip())
    if m is None:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)


def _hhmm(seconds: float) -> str:
    s = int(seconds) % 86400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def resolve_clock_times(raw: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The scenario dict with every clock-time field turned into its seconds field."""

    def has(lst: str | None, key: str) -> bool:
        if lst is None:
            return key in raw
        return any(isinstance(x, dict) and key in x for x in raw.get(lst) or [])

    if not any(has(lst, key) for lst, key, _s in CLOCK_FIELDS):
        return raw
    out = copy.deepcopy(raw)
    demand = out.get("demand") if isinstance(out.get("demand"), dict) else {}
    period = demand.get("period", "am_peak") if isinstance(demand, dict) else "am_peak"
    start = PERIODS.get(str(period), PERIODS["am_peak"])["start_s"]
    period_start_s = float(start)

    def convert(table: dict[str, Any], key: str, seconds_key: str, where: str) -> None:
        if key not in table:
            return
        value = table.pop(key)
        if seconds_key in table:
            raise ScenarioError(
                f"{source}: field '{where}{key}' = {value!r} and '{where}{seconds_key}' are "
                "both given; give one (a clock time, or seconds after the period starts)."
            )
        day_s = clock_s(value)
        if day_s is None:
            raise ScenarioError(
                f"{source}: field '{where}{key}' = {value!r}; allowed: a clock time "
                '"HH:MM" or "HH:MM:SS" (24 h), e.g. "08:10".'
            )
        t_s = day_s - period_start_s
        if t_s < 0:
            raise ScenarioError(
                f"{source}: field '{where}{key}' = {value!r} is before the {period} period "
                f"starts ({_hhmm(period_start_s)}, simulated time 0); allowed: "
                f"{_hhmm(period_start_s)} or later, or give '{where}{seconds_key}'."
            )
        table[seconds_key] = t_s

    for lst, key, seconds_key in CLOCK_FIELDS:
        if lst is None:
            convert(out, key, seconds_key, "")
            continue
        for k, item in enumerate(out.get(lst) or []):
            if isinstance(item, dict):
                convert(item, key, seconds_key, f"{lst}[{k}].")
    return out
