"""Live mode follows the city and looks ahead: calibrate to the counts it ingests, fork
the shadow twin's present into futures.

- :class:`CountWindow`: every accepted loop count of the last ``keep_s`` (live clock
  seconds), in arrival order; what :func:`live_calibrate` reads.
- :func:`live_calibrate`: the counts of a rolling window (``window_s`` ending now, in
  ``interval_s`` intervals) through :func:`city_models.counts.counts_from_loops` and
  :func:`city_models.calibrate.calibrate_demand` -- the same code ``twin calibrate``
  runs on a counts file -- into a demand variant stored with the city, with its GEH
  report. It runs in a separate process (routeSampler and two SUMO runs take minutes of
  CPU; the live service's loop must keep its heartbeats) and is audited.
- :func:`live_fork`: the shadow twin saves its state now (:meth:`ShadowTwin.request_save`)
  with what the field shows (per commanded signal the interval, stage and time in it),
  and :func:`twin.app.fork.plan_forks` / :func:`~twin.app.fork.run_forks` run the null
  fork and each variant from it in worker processes: every signal through the guard,
  the commanded ones taking over from the field's interval (never cut), the center's
  control (fixed plans or adaptive) as the null fork's. Each fork is a recorded run;
  the request and its table are audited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing as mp
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from city_models.build import load_city
from city_models.calibrate import CalibrationOptions, calibrate_demand, demand_variants
from city_models.counts import Counts, counts_from_loops
from twin.app.fork import HEADLINES, plan_forks, run_forks
from twin.app.live.shadow import ShadowDownError
from twin.config import Settings, load_settings
from twin.engine.store import jsonable
from twin.errors import ConfigError, TwinError

if TYPE_CHECKING:
    from twin.app.fork import VariantsFile
    from twin.app.live.ingest import Count
    from twin.app.live.service import LiveService

log = logging.getLogger(__name__)

KEEP_S = 4 * 3600.0
"""How long the service keeps ingested counts (live clock seconds)."""
MAX_WINDOW_S = KEEP_S


class CountWindow:
    """The accepted loop counts of the last ``keep_s`` live-clock seconds."""

    def __init__(self, keep_s: float = KEEP_S) -> None:
        self.keep_s = keep_s
        self._counts: deque[Count] = deque()
        self._lock = threading.Lock()

    def add(self, count: Count, now_s: float) -> None:
        with self._lock:
            self._counts.append(count)
            while self._counts and self._counts[0].t_end_s < now_s - self.keep_s:
                self._counts.popleft()

    def __len__(self) -> int:
        return len(self._counts)

    def __iter__(self) -> Iterator[Count]:
        with self._lock:
            return iter(list(self._counts))


# --------------------------------------------------------------------------- calibrate
@dataclass(frozen=True)
class LiveCalibration:
    """A rolling-window calibration request (validated)."""

    window_s: float = 3600.0
    interval_s: float = 300.0
    name: str | None = None
    end_s: float | None = None
    """Where the window ends (live clock); default: the last interval boundary passed."""
    period_start_s: float | None = None
    """The live clock's time at which the calibrated period starts (e.g. 25200 for an
    AM peak from 07:00 on a time-of-day clock): the variant's time line. Default: the
    window's start."""
    options: CalibrationOptions = field(default_factory=CalibrationOptions)

    def __post_init__(self) -> None:
        if not 300.0 <= self.window_s <= MAX_WINDOW_S:
            raise ConfigError(
                f"Live calibration: window_s = {self.window_s:g}; allowed: 300 .. "
                f"{MAX_WINDOW_S:g} s (the counts the service keeps)."
            )

    def window_end_s(self, now_s: float) -> float:
        """``end_s``, else the last interval boundary (of the clock's time line) that has
        passed: field detectors report intervals aligned to it. A window that ends in
        the future is refused."""
        if self.end_s is None:
            return math.floor(now_s / self.interval_s + 1e-9) * self.interval_s
        if self.end_s > now_s + 1e-6:
            raise ConfigError(
                f"Live calibration: end_s = {self.end_s:g} is in the future (the clock reads "
                f"{now_s:.0f}); allowed: a time that has passed."
            )
        return self.end_s


def _calibrate_job(
    city_path: str, counts: Counts, name: str, options: CalibrationOptions
) -> dict[str, Any]:
    """In the calibration process: calibrate and return the variant's report."""
    logging.basicConfig(level=logging.WARNING)
    city = load_city(Path(city_path))
    variant = calibrate_demand(city, counts, name=name, options=options, force=True)
    return {
        "variant": variant.name,
        "path": str(variant.path),
        "period": variant.period,
        "begin_s": variant.begin_s,
        "end_s": variant.end_s,
        "report": {k: v for k, v in variant.report.items() if k != "fits"},
    }


class BusyError(TwinError):
    """Another live fork (or calibration) is running: one at a time, so the center keeps
    its cores for the field."""


def _one_at_a_time(svc: LiveService, what: str) -> asyncio.Lock:
    lock = svc.follow_locks.setdefault(what, asyncio.Lock())
    if lock.locked():
        raise BusyError(f"A live {what} is running; one at a time. Try again when it ends.")
    return lock


async def live_calibrate(svc: LiveService, req: LiveCalibration, *, who: str) -> dict[str, Any]:
    """Calibrate the city's demand to the counts ingested over the last
    ``req.window_s`` (see the module doc); returns the variant and its report (GEH per
    site and interval in the stored report). The variant's time line starts at the
    window's start (or ``req.period_start_s``). Raises :class:`~twin.errors.CityError`
    when the window holds no usable count and :class:`~twin.errors.ConfigError` for a
    variant name the city has already (a stored variant is never replaced: scenarios
    and the shadow may run on it), before any process starts; :class:`BusyError` while
    another calibration runs."""
    async with _one_at_a_time(svc, "calibration"):
        end_s = req.window_end_s(svc.clock.now_s())
        name = req.name or f"live-{int(end_s) // 60:05d}"
        try:
            if name in demand_variants(svc.city):
                raise ConfigError(
                    f"Live calibration: demand variant {name!r} exists in city "
                    f"{svc.city.name} already (a stored variant is never replaced); allowed: "
                    "another name."
                )
            counts = await asyncio.to_thread(
                counts_from_loops, list(svc.counts), svc.city, window_end_s=end_s,
                window_s=req.window_s, interval_s=req.interval_s,
                period_start_s=req.period_start_s,
            )  # fmt: skip
        except TwinError as exc:
            svc.audit.append("calibrate_refused", by=who, variant=name, reason=str(exc))
            raise
        svc.audit.append(
            "calibrate_start", by=who, variant=name, window_end_s=round(end_s, 3),
            window_s=req.window_s, interval_s=req.interval_s, rows=len(counts.rows),
            total_veh=counts.total_veh, options=req.options.to_dict(),
        )  # fmt: skip
        wall0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
        try:
            out = await loop.run_in_executor(
                pool, _calibrate_job, str(svc.city.path), counts, name, req.options
            )
        except TwinError as exc:
            svc.audit.append("calibrate_done", by=who, variant=name, ok=False, error=str(exc))
            raise
        except Exception as exc:
            svc.audit.append("calibrate_done", by=who, variant=name, ok=False, error=repr(exc))
            raise TwinError(
                f"Live calibration {name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:  # off the loop: it must keep the field's heartbeats
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        out["window_end_s"] = end_s
        out["window_s"] = req.window_s
        out["wall_s"] = round(time.perf_counter() - wall0, 2)
        rep = out["report"]
        svc.audit.append(
            "calibrate_done", by=who, variant=name, ok=True, accepted=rep.get("accepted"),
            geh_lt5_share=rep.get("geh_lt5_share"),
            total_flow_err_pct=rep.get("total_flow_err_pct"),
            vehicles_ratio=rep.get("vehicles_ratio"), wall_s=out["wall_s"],
        )  # fmt: skip
        return out


# --------------------------------------------------------------------------- fork
OVERDUE_MARGIN_S = 0.1
"""How far before its end an overdue yellow or all-red is taken to stand."""


def field_intervals_now(svc: LiveService) -> dict[str, list[Any]]:
    """Per signal the center commands now (not handed back, not down): the interval it
    shows, its stage and the time in it, read now. A yellow or all-red whose end is
    overdue (its change not shown yet) counts as just before its end: a fork finishes
    it, never takes over a finished interval."""
    port = svc.port
    if port is None:
        return {}
    now = svc.clock.now_s()
    out: dict[str, list[Any]] = {}
    for tls, g in zip(port.ids, port.guards, strict=True):
        if port.is_local(tls):
            continue
        length_s = g.next_change_s() - g.entered_s
        elapsed_s = max(min(now - g.entered_s, length_s - OVERDUE_MARGIN_S), 0.0)
        out[tls] = [g.interval, g.stage, elapsed_s]
    return out


def fork_base(svc: LiveService) -> list[tuple[str, Any]]:
    """The overrides that make the null fork do what the center does: its adaptive
    control on the signals it commands now (fixed plans through the guard otherwise)."""
    port = svc.port
    if svc.opt.control == "adaptive" and port is not None:
        commanded = [t for t in port.ids if not port.is_local(t)]
        return [("control.by_signal", dict.fromkeys(commanded, "adaptive"))] if commanded else []
    return []


LIVE_FORK_FIXED = ("outputs",)
"""Sections a live fork's variant may not change (on the live machine: no trajectory
files for a dozen forecasts)."""


async def live_fork(
    svc: LiveService,
    variants: VariantsFile,
    *,
    ahead_s: float,
    mode: str = "meso",
    who: str,
    settings: Settings | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Fork the shadow twin's present (see the module doc); returns the comparison
    (:meth:`twin.app.fork.ForkResult.to_dict`, NaN as null). Raises
    :class:`~twin.errors.ConfigError` for a variant that changes ``outputs``,
    :class:`BusyError` while another live fork runs,
    :class:`~twin.app.live.shadow.ShadowDownError` when the shadow does not run or
    answer."""
    for v in variants.variants:
        for key, _value in v.overrides:
            if key.split(".", 1)[0] in LIVE_FORK_FIXED:
                raise ConfigError(
                    f"Request body: field 'variant.{v.name}.{key}': a live fork keeps the "
                    "shadow's outputs; allowed: control.* and the scenario's own fields."
                )
    shadow = svc.shadow
    if shadow is None:
        raise ShadowDownError(
            "A live fork starts from the shadow twin's state, and none runs; start live "
            "mode with --shadow."
        )
    async with _one_at_a_time(svc, "fork"):
        overrides = {v.name: [[k, x] for k, x in v.overrides] for v in variants.variants}
        svc.audit.append("fork_start", by=who, ahead_s=ahead_s, mode=mode, variants=overrides,
                         places=list(variants.places))  # fmt: skip
        try:
            # on the loop, where the field's states are fed to the shadow: the save comes
            # after every state fed before, and the intervals are those SUMO then shows
            token = shadow.request_save({"field_intervals": field_intervals_now(svc)})
            path = await asyncio.to_thread(shadow.wait_saved, token)
            plan = await asyncio.to_thread(
                plan_forks, path, variants, at_s=None, ahead_s=ahead_s, mode=mode,
                base=fork_base(svc),
            )  # fmt: skip
            store = settings or svc.opt.runs or load_settings()
            workers = workers or svc.opt.fork_workers
            result = await asyncio.to_thread(run_forks, store, plan, workers=workers)
        except Exception as exc:
            svc.audit.append("fork_done", by=who, ok=False, error=f"{type(exc).__name__}: {exc}")
            raise
        out: dict[str, Any] = jsonable(result.to_dict())
        svc.audit.append(
            "fork_done", by=who, ok=not out["failed"], state=str(path), at_s=plan.at_s,
            forks=list(plan.names), runs=[r.id for r in result.records], failed=out["failed"],
            table=[{"variant": r["variant"], "run_id": r["run_id"], "status": r["status"],
                    **{k: r["metrics"].get(k) for k in HEADLINES}} for r in out["forks"]],
        )  # fmt: skip
        return out
