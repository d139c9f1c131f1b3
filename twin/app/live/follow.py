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
- :func:`live_fork`: the shadow twin saves its state now (:meth:`ShadowTwin.save_state`)
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
from city_models.calibrate import CalibrationOptions, calibrate_demand
from city_models.counts import Counts, counts_from_loops
from twin.app.fork import plan_forks, run_forks
from twin.config import Settings, load_settings
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


async def live_calibrate(svc: LiveService, req: LiveCalibration, *, who: str) -> dict[str, Any]:
    """Calibrate the city's demand to the counts ingested over the last
    ``req.window_s`` (see the module doc); returns the variant and its report (GEH per
    site and interval in the stored report). The variant's time line starts at the
    window's start. Raises :class:`~twin.errors.CityError` when the window holds no
    usable count, before any process starts."""
    end_s = req.window_end_s(svc.clock.now_s())
    counts = counts_from_loops(
        svc.counts, svc.city, window_end_s=end_s, window_s=req.window_s,
        interval_s=req.interval_s, period_start_s=req.period_start_s,
    )  # fmt: skip
    name = req.name or f"live-{int(end_s) // 60:05d}"
    svc.audit.append(
        "calibrate_start", by=who, variant=name, window_end_s=round(end_s, 3),
        window_s=req.window_s, interval_s=req.interval_s, rows=len(counts.rows),
        total_veh=counts.total_veh,
    )  # fmt: skip
    wall0 = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            out = await loop.run_in_executor(
                pool, _calibrate_job, str(svc.city.path), counts, name, req.options
            )
    except TwinError as exc:
        svc.audit.append("calibrate_done", by=who, variant=name, ok=False, error=str(exc))
        raise
    except Exception as exc:
        svc.audit.append("calibrate_done", by=who, variant=name, ok=False, error=repr(exc))
        raise TwinError(f"Live calibration {name!r} failed: {type(exc).__name__}: {exc}") from exc
    out["window_end_s"] = end_s
    out["window_s"] = req.window_s
    out["wall_s"] = round(time.perf_counter() - wall0, 2)
    rep = out["report"]
    svc.audit.append(
        "calibrate_done", by=who, variant=name, ok=True, accepted=rep.get("accepted"),
        geh_lt5_share=rep.get("geh_lt5_share"), total_flow_err_pct=rep.get("total_flow_err_pct"),
        vehicles_ratio=rep.get("vehicles_ratio"), wall_s=out["wall_s"],
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- fork
def field_entered(svc: LiveService) -> dict[str, list[Any]]:
    """Per signal the center commands now (not handed back, not down): the interval it
    shows, its stage and when (live clock) it entered it."""
    port = svc.port
    if port is None:
        return {}
    return {
        tls: [g.interval, g.stage, g.entered_s]
        for tls, g in zip(port.ids, port.guards, strict=True)
        if not port.is_local(tls)
    }


def fork_base(svc: LiveService) -> list[tuple[str, Any]]:
    """The overrides that make the null fork do what the center does: its adaptive
    control on the signals it commands (fixed plans through the guard otherwise)."""
    if svc.opt.control == "adaptive" and svc.port is not None:
        return [("control.by_signal", dict.fromkeys(svc.port.ids, "adaptive"))]
    return []


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
    (:meth:`twin.app.fork.ForkResult.to_dict`)."""
    shadow = svc.shadow
    if shadow is None:
        raise ConfigError(
            "A live fork starts from the shadow twin's state, and none runs; start live "
            "mode with --shadow."
        )
    meta = {"field_entered": field_entered(svc)}
    path = await asyncio.to_thread(shadow.save_state, meta)
    plan = await asyncio.to_thread(
        plan_forks, path, variants, at_s=None, ahead_s=ahead_s, mode=mode, base=fork_base(svc)
    )
    svc.audit.append(
        "fork_start", by=who, state=str(path), at_s=plan.at_s, ahead_s=ahead_s, mode=mode,
        forks=list(plan.names),
    )  # fmt: skip
    store = settings or svc.opt.runs or load_settings()
    workers = workers or svc.opt.fork_workers
    result = await asyncio.to_thread(run_forks, store, plan, workers=workers)
    out = result.to_dict()
    svc.audit.append(
        "fork_done", by=who, state=str(path), forks=list(plan.names),
        runs=[r.id for r in result.records], failed=out["failed"],
    )  # fmt: skip
    return out
