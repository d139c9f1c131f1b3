"""Ingest: GPS fixes of emergency vehicles and detector counts, validated before use.

Both come as JSON, over MQTT (:mod:`.mqtt`) or the API (``/v1/live/...``). Every
message gets one answer: accepted, or rejected with a reason (logged, audited, counted),
never an exception. The checks, in order:

GPS (``citytwin/ev/{agency}/{vehicle}/gps``)::

    {"vehicle": "amb1", "agency": "fire", "t": 1764500000.2,   # GNSS time, Unix s or ISO 8601
     "lat": 37.27, "lon": 127.03, "speed_mps": 11.8,           # or "speed_kph"
     "heading_deg": 92.0, "accuracy_m": 6.0, "seq": 17}        # seq optional

- ``malformed``: not JSON, a field missing, of the wrong type, NaN or infinite;
- ``unknown_vehicle``: no mission for that vehicle (``POST /v1/live/ev``);
  ``agency_mismatch``: it belongs to another agency;
- ``rate_limited``: more than ``max_rate_hz`` (burst ``burst``) from one source;
- ``future``: more than ``max_future_s`` ahead of the center's clock (clock skew is
  bounded); ``too_old``: older than ``max_age_s``;
- ``outside_city``: outside the city's box (plus ``margin_m``); ``speed_out_of_range``
  (above ``max_speed_kph``); ``inaccurate`` (``accuracy_m`` above ``max_accuracy_m``);
- ``duplicate``: the same vehicle and fix time again (a replayed message);
  ``out_of_order``: older than the vehicle's last accepted fix (late: kept in the audit,
  not used).

Detectors (``citytwin/detector/{loop}``)::

    {"loop": "d_n7_7_e3_0_stop", "t_end": 1764500010.0, "interval_s": 30,
     "count_veh": 9, "occupancy_pct": 12.5}

- ``malformed``, ``unknown_loop``, ``rate_limited``, ``future``, ``too_old``,
  ``count_out_of_range`` (negative, or more than ``max_flow_vph`` per lane),
  ``occupancy_out_of_range`` (not 0-100), ``duplicate`` (same loop and interval end).

Times inside the center are seconds of the live clock (:class:`.clock.LiveClock`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from city_models.build import City
from city_models.geo import projection_of
from twin.app.live.clock import LiveClock

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- limits
@dataclass(frozen=True)
class IngestLimits:
    """The bounds every report is checked against (clock seconds unless named)."""

    max_future_s: float = 2.0
    max_age_s: float = 10.0
    max_speed_kph: float = 200.0
    max_accuracy_m: float = 50.0
    margin_m: float = 300.0
    max_rate_hz: float = 5.0
    burst: int = 10
    dedup_window: int = 4096
    max_flow_vph: float = 3000.0
    max_detector_age_s: float = 900.0


def _unix_s(value: object) -> float:
    """Unix seconds from a number or an ISO 8601 text (``Z`` or an offset; naive = UTC)."""
    if isinstance(value, bool):
        raise ValueError("a time, not a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return stamp.timestamp()
    raise ValueError("a time: Unix seconds or ISO 8601")


class GpsMessage(BaseModel):
    """One GPS fix as the phone sends it."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    vehicle: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$")
    agency: str | None = Field(
        default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_\-]+$"
    )
    t: float
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)
    speed_mps: float | None = Field(default=None, ge=0.0)
    speed_kph: float | None = Field(default=None, ge=0.0)
    heading_deg: float | None = Field(default=None, ge=0.0, le=360.0)
    accuracy_m: float | None = Field(default=None, ge=0.0)
    seq: int | None = Field(default=None, ge=0)
    sent_wall: float | None = None  # the publisher's wall clock (latency measurement)

    @field_validator("t", mode="before")
    @classmethod
    def _time(cls, value: object) -> float:
        return _unix_s(value)

    @property
    def speed(self) -> float | None:
        if self.speed_mps is not None:
            return self.speed_mps
        return None if self.speed_kph is None else self.speed_kph / 3.6


class DetectorMessage(BaseModel):
    """One loop's count over one interval, as a VDS site sends it."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    loop: str = Field(min_length=1, max_length=80)
    t_end: float
    interval_s: float = Field(ge=1.0, le=3600.0)
    count_veh: int
    occupancy_pct: float | None = None
    speed_kph: float | None = Field(default=None, ge=0.0, le=300.0)
    site: str | None = Field(default=None, max_length=80)

    @field_validator("t_end", mode="before")
    @classmethod
    def _time(cls, value: object) -> float:
        return _unix_s(value)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class GpsFix:
    """An accepted fix, in the center's terms."""

    vehicle: str
    agency: str
    t_s: float
    received_s: float
    x_m: float
    y_m: float
    speed_mps: float | None
    heading_deg: float | None
    accuracy_m: float | None
    sent_wall: float | None
    received_wall: float


@dataclass(frozen=True)
class Count:
    """An accepted detector count."""

    loop: str
    t_end_s: float
    interval_s: float
    count_veh: int
    occupancy_pct: float | None
    late: bool = False


@dataclass(frozen=True)
class Verdict:
    """The answer to one message: ``accepted`` with the fix or count, or a reason."""

    accepted: bool
    reason: str | None = None
    detail: str = ""
    fix: GpsFix | None = None
    count: Count | None = None
    vehicle: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted}
        if not self.accepted:
            out.update(reason=self.reason, detail=self.detail)
        return out


def _reject(reason: str, detail: str, *, vehicle: str | None = None) -> Verdict:
    log.info("report rejected (%s): %s", reason, detail)
    return Verdict(False, reason, detail, vehicle=vehicle)


class _Bucket:
    """A token bucket in clock seconds."""

    def __init__(self, rate_hz: float, burst: int, now_s: float) -> None:
        self.rate, self.burst = rate_hz, float(burst)
        self.tokens, self.t = float(burst), now_s

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(now_s - self.t, 0.0) * self.rate)
        self.t = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _load(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "(message)"
    return f"field '{where}': {e['msg']}"


class Ingest:
    """The validators of one live center (state: the missions, buckets, last fixes).

    Parameters
    ----------
    city
        The city (its box, its loops).
    clock
        The live clock.
    limits
        The bounds (:class:`IngestLimits`).
    """

    def __init__(self, city: City, *, clock: LiveClock, limits: IngestLimits | None = None) -> None:
        self.city = city
        self.clock = clock
        self.limits = limits or IngestLimits()
        m = city.manifest
        self.projection = projection_of(m)
        x0, y0, x1, y1 = m.bbox_xy
        g = self.limits.margin_m
        self.box = (x0 - g, y0 - g, x1 + g, y1 + g)
        self.loops = {d.id for d in m.detectors}
        self.vehicles: dict[str, str] = {}
        """Vehicle -> agency, for every EV with a mission."""
        self._buckets: dict[str, _Bucket] = {}
        self._seen: OrderedDict[tuple[str, float], None] = OrderedDict()
        self._last_fix: dict[str, float] = {}
        self._seen_counts: deque[tuple[str, float]] = deque(maxlen=self.limits.dedup_window)
        self._seen_count_set: set[tuple[str, float]] = set()
        self.rejected: dict[str, int] = {}
        self.accepted = 0
        self.seen = {"gps": 0, "detector": 0}
        """Messages checked, per kind (accepted or not)."""

    def clock_of(self, wall_s: float) -> float:
        c = self.clock
        return c.origin_s + c.speed * (wall_s - c.epoch_wall_s)

    def _rate(self, source: str, now_s: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(
                self.limits.max_rate_hz, self.limits.burst, now_s
            )
        return bucket.take(now_s)

    def _count(self, v: Verdict) -> Verdict:
        if v.accepted:
            self.accepted += 1
        else:
            key = v.reason or "?"
            self.rejected[key] = self.rejected.get(key, 0) + 1
        return v

    # ------------------------------------------------------------------ GPS
    def gps(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        source: str,
        received_wall: float,
        topic_agency: str | None = None,
        topic_vehicle: str | None = None,
    ) -> Verdict:
        """Check one GPS message (see the module doc); never raises."""
        self.seen["gps"] += 1
        return self._count(self._gps(raw, source, received_wall, topic_agency, topic_vehicle))

    def _gps(  # noqa: PLR0911 - one reason per check, in order
        self,
        raw: bytes | str | Mapping[str, Any],
        source: str,
        received_wall: float,
        topic_agency: str | None,
        topic_vehicle: str | None,
    ) -> Verdict:
        lim = self.limits
        try:
            data = _load(raw)
            if topic_vehicle is not None:
                data.setdefault("vehicle", topic_vehicle)
            if topic_agency is not None:
                data.setdefault("agency", topic_agency)
            msg = GpsMessage.model_validate(data)
        except ValidationError as exc:
            return _reject("malformed", _first_error(exc))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            return _reject("malformed", f"not a JSON object: {str(exc)[:80]}")
        v = msg.vehicle
        if topic_vehicle is not None and v != topic_vehicle:
            return _reject(
                "malformed", f"vehicle {v!r} in a message on {topic_vehicle!r}'s topic", vehicle=v
            )
        agency = self.vehicles.get(v)
        if agency is None:
            return _reject("unknown_vehicle", f"no mission for vehicle {v!r}", vehicle=v)
        claimed = topic_agency or msg.agency
        if claimed is not None and claimed != agency:
            return _reject(
                "agency_mismatch", f"{v} belongs to {agency!r}, not {claimed!r}", vehicle=v
            )
        now_s = self.clock_of(received_wall)
        if not self._rate(f"gps/{source}/{v}", now_s):
            return _reject(
                "rate_limited", f"{v}: more than {lim.max_rate_hz:g}/s from {source}", vehicle=v
            )
        t_s = self.clock_of(msg.t)
        if t_s > now_s + lim.max_future_s:
            return _reject(
                "future", f"{v}: fix {t_s - now_s:.1f} s ahead of the center's clock", vehicle=v
            )
        if now_s - t_s > lim.max_age_s:
            return _reject(
                "too_old",
                f"{v}: fix {now_s - t_s:.0f} s old (limit {lim.max_age_s:g} s)",
                vehicle=v,
            )
        x, y = self.projection.lonlat_to_xy(msg.lon, msg.lat)
        x0, y0, x1, y1 = self.box
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return _reject(
                "outside_city", f"{v}: {msg.lat:.5f}, {msg.lon:.5f} is outside the city", vehicle=v
            )
        speed = msg.speed
        given_kph = [s * 3.6 for s in (msg.speed_mps,) if s is not None]
        given_kph += [s for s in (msg.speed_kph,) if s is not None]
        worst_kph = max(given_kph, default=0.0)  # both given: each must be in range
        if worst_kph > lim.max_speed_kph:
            return _reject(
                "speed_out_of_range",
                f"{v}: {worst_kph:.0f} km/h (limit {lim.max_speed_kph:g})",
                vehicle=v,
            )
        if msg.accuracy_m is not None and msg.accuracy_m > lim.max_accuracy_m:
            return _reject("inaccurate", f"{v}: accuracy {msg.accuracy_m:g} m", vehicle=v)
        key = (v, round(msg.t, 3))
        if key in self._seen:
            return _reject("duplicate", f"{v}: fix at {msg.t} seen before (replay)", vehicle=v)
        self._seen[key] = None
        while len(self._seen) > lim.dedup_window:
            self._seen.popitem(last=False)
        last = self._last_fix.get(v)
        if last is not None and t_s < last:
            return _reject(
                "out_of_order", f"{v}: fix {last - t_s:.1f} s older than the last one", vehicle=v
            )
        self._last_fix[v] = t_s
        fix = GpsFix(
            vehicle=v,
            agency=agency,
            t_s=t_s,
            received_s=now_s,
            x_m=x,
            y_m=y,
            speed_mps=speed,
            heading_deg=msg.heading_deg,
            accuracy_m=msg.accuracy_m,
            sent_wall=msg.sent_wall,
            received_wall=received_wall,
        )
        return Verdict(True, fix=fix, vehicle=v)

    # ------------------------------------------------------------------ detectors
    def detector(
        self,
        raw: bytes | str | Mapping[str, Any],
        *,
        source: str,
        received_wall: float,
        closed_before_s: float = -math.inf,
    ) -> Verdict:
        """Check one detector message; ``closed_before_s``: intervals ending before this
        were already used for control (a later count for them is ``late``)."""
        self.seen["detector"] += 1
        return self._count(self._detector(raw, source, received_wall, closed_before_s))

    def _detector(  # noqa: PLR0911
        self,
        raw: bytes | str | Mapping[str, Any],
        source: str,
        received_wall: float,
        closed_before_s: float,
    ) -> Verdict:
        lim = self.limits
        try:
            msg = DetectorMessage.model_validate(_load(raw))
        except ValidationError as exc:
            return _reject("malformed", _first_error(exc))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            return _reject("malformed", f"not a JSON object: {str(exc)[:80]}")
        if msg.loop not in self.loops:
            return _reject("unknown_loop", f"no loop {msg.loop!r} in city {self.city.name}")
        now_s = self.clock_of(received_wall)
        if not self._rate(f"det/{source}/{msg.loop}", now_s):
            return _reject("rate_limited", f"{msg.loop}: too many reports from {source}")
        t_s = self.clock_of(msg.t_end)
        if t_s > now_s + lim.max_future_s:
            return _reject("future", f"{msg.loop}: interval ends {t_s - now_s:.1f} s in the future")
        if now_s - t_s > lim.max_detector_age_s:
            return _reject("too_old", f"{msg.loop}: interval ended {now_s - t_s:.0f} s ago")
        cap = lim.max_flow_vph * msg.interval_s / 3600.0
        if not 0 <= msg.count_veh <= cap:
            return _reject(
                "count_out_of_range",
                f"{msg.loop}: {msg.count_veh} vehicles in {msg.interval_s:g} s",
            )
        if msg.occupancy_pct is not None and not 0.0 <= msg.occupancy_pct <= 100.0:
            return _reject(
                "occupancy_out_of_range", f"{msg.loop}: occupancy {msg.occupancy_pct:g} %"
            )
        key = (msg.loop, round(msg.t_end, 3))
        if key in self._seen_count_set:
            return _reject("duplicate", f"{msg.loop}: interval ending {msg.t_end} seen before")
        if len(self._seen_counts) == self._seen_counts.maxlen:
            self._seen_count_set.discard(self._seen_counts[0])
        self._seen_counts.append(key)
        self._seen_count_set.add(key)
        count = Count(
            msg.loop,
            t_s,
            msg.interval_s,
            msg.count_veh,
            msg.occupancy_pct,
            late=t_s < closed_before_s,
        )
        return Verdict(True, count=count)
