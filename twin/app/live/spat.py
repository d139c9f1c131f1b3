"""SPaT out: signal phase and timing per intersection, with SAE J2735 semantics, as JSON.

The ASN.1 module is SAE's and is not copied here; the message carries the same fields
(names as in J2735 ``SPAT`` / ``IntersectionState`` / ``MovementState``) as JSON, plus
plain seconds for readers that do not count tenths within the hour:

.. code-block:: json

    {"intersection": "n7_7", "timestamp_s": 29401.2, "moy": 490, "timeStamp": 1200,
     "status": {"preemptIsActive": true, "signalPriorityIsActive": true, "controllerDown": false},
     "states": [{"signalGroup": 2, "stage": 1, "eventState": "protected-Movement-Allowed",
                 "minEndTime": 1012, "maxEndTime": 1612, "likelyTime": 1400,
                 "min_end_s": 29401.2, "max_end_s": 29461.2, "likely_end_s": 29439.9}]}

Per signal group (one per NTCIP phase; the phases of one stage move together):

- the green of the stage shown: ``protected-Movement-Allowed`` (``permissive-...`` when
  the stage gives only yielding greens); the green ends no sooner than its minimum
  (``minEndTime``), no later than its maximum or the priority hold's cap
  (``maxEndTime``), likely when the guard plans to end it (``likelyTime``);
- its yellow: ``protected-clearance``, ending exactly when the yellow ends;
- every other group: ``stop-And-Remain``; its red ends no sooner than the quickest way
  there (the current green's minimum, yellow and all-red, or the intergreen under way
  for the group coming next), likely when the plan's sequence reaches it; its latest end
  is unknown (``36001``: a priority can hold it longer).

``TimeMark`` values are tenths of a second within the hour of the live clock
(``36001``: unknown). ``moy`` is J2735's minute of the year (UTC): the minutes of the
year's days gone by (today's date, UTC) plus the live clock's minutes (a time of day).
``preemptIsActive``: an emergency vehicle holds (or is being
given) this intersection; ``signalPriorityIsActive``: the intersection runs off its
plan for priority (held, or recovering coordination).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from signal_control.guard import GuardPlan
from signal_control.port import SignalStatus

UNKNOWN_TIME_MARK = 36001
HOUR_S = 3600.0


def time_mark(t_s: float) -> int:
    """J2735 ``TimeMark``: tenths of a second within the hour (36001: unknown)."""
    if not math.isfinite(t_s):
        return UNKNOWN_TIME_MARK
    return math.floor((t_s % HOUR_S) * 10.0 + 1e-6) % 36000


def _r(t: float) -> float | None:
    return round(t, 3) if math.isfinite(t) else None


def _green_event(state: str) -> str:
    return "protected-Movement-Allowed" if "G" in state else "permissive-Movement-Allowed"


def spat_message(
    tls: str,
    st: SignalStatus,
    plan: GuardPlan,
    stage_phases: Sequence[Sequence[int]],
    *,
    now_s: float,
    preempt: bool,
    priority: bool,
    down: bool = False,
    year_start_min: int | None = None,
) -> dict[str, Any]:
    """The SPaT of one intersection now (see the module doc). ``year_start_min``: the
    minutes of the year before today's midnight (default: from today's UTC date)."""
    year_min = _year_start_min() if year_start_min is None else year_start_min
    n = plan.n_stages
    inter = plan.yellow_s + plan.all_red_s
    states: list[dict[str, Any]] = []
    # when each stage could start, and likely starts, from the current interval
    earliest: dict[int, float] = {}
    likely: dict[int, float] = {}
    if st.interval == "green":
        min_end = max(now_s, st.min_end_s)
        plan_end = st.next_change_s if math.isfinite(st.next_change_s) else st.priority_until_s
        first = st.priority_stage
        if first is None or first == st.stage:
            first = (st.stage + 1) % n
        order = [(first + d) % n for d in range(n)]
        t = plan_end + inter
        for k in order:
            if k == st.stage:
                continue
            earliest[k] = min_end + inter
            likely[k] = t
            t += plan.green_s[k] + inter
    else:
        start = st.next_change_s + (plan.all_red_s if st.interval == "yellow" else 0.0)
        earliest[st.target] = likely[st.target] = start
        t = start + plan.green_s[st.target] + inter
        for d in range(1, n):
            k = (st.target + d) % n
            earliest.setdefault(k, start + plan.min_green_s[st.target] + inter)
            likely.setdefault(k, t)
            t += plan.green_s[k] + inter
    for k in range(n):
        if down:
            event, lo, hi, mid = "unavailable", math.nan, math.nan, math.nan
        elif st.stage == k and st.interval == "green":
            event = _green_event(plan.green_states[k])
            lo = max(now_s, st.min_end_s)
            cap = st.entered_s + plan.max_green_s[k]
            if st.priority_stage == k and math.isfinite(st.priority_until_s):
                cap = max(cap, st.priority_until_s)
            hi = max(cap, lo)
            mid = min(max(st.next_change_s, lo), hi) if math.isfinite(st.next_change_s) else hi
        elif st.stage == k and st.interval == "yellow":
            event = "protected-clearance"
            lo = hi = mid = st.next_change_s
        else:
            event = "stop-And-Remain"
            lo = earliest.get(k, now_s)
            mid = max(likely.get(k, lo), lo)
            hi = math.inf
        for group in stage_phases[k]:
            states.append(
                {
                    "signalGroup": int(group),
                    "stage": k,
                    "eventState": event,
                    "minEndTime": time_mark(lo),
                    "maxEndTime": time_mark(hi),
                    "likelyTime": time_mark(mid),
                    "min_end_s": _r(lo),
                    "max_end_s": _r(hi),
                    "likely_end_s": _r(mid),
                }
            )
    return {
        "intersection": tls,
        "timestamp_s": round(now_s, 3),
        "moy": int(year_min + now_s // 60) % (366 * 1440),
        "timeStamp": int((now_s % 60.0) * 1000),
        "status": {
            "preemptIsActive": preempt,
            "signalPriorityIsActive": priority,
            "controllerDown": down,
        },
        "interval": None if down else st.interval,
        "stage": None if down else st.stage,
        "states": states,
    }


def _year_start_min() -> int:
    """Minutes of this year (UTC) before today's midnight."""
    return (dt.datetime.now(dt.UTC).timetuple().tm_yday - 1) * 1440
