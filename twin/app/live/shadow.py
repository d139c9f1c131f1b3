"""The shadow twin: SUMO at the live clock's pace, mirroring the field.

A :class:`~twin.engine.run.Run` of the city's demand (a baseline run: the period's OD
model) in its own process (libsumo runs one simulation per process), paced by the live
clock: every ``tick_wall_s`` it is advanced to where the clock says. What it is fed:

- the signal states the controllers are told and confirm (the field display's, on
  every change), shown in SUMO as they are (``set_signal_state``), so SUMO's signals do
  what the field's do;
- the detector counts that come in, per loop and interval; each is set against SUMO's
  own count of the same loop over the interval nearest in time.

What it gives back (every tick): the simulated time, the halting vehicles on every
signalized lane (the center's queue estimates: the EV planner's queue in front of the
EV and the adaptive controller's residual queue) and the divergence figure: over every
(loop, interval) both counted, ``sum |simulated - reported| / sum reported``, and the
share of them with GEH < 5 (hourly flows).

The counts only measure how far the shadow is from the field; they do not steer its
demand (no calibrators): a shadow that drifts says so in its divergence.

On request (:meth:`ShadowTwin.request_save`) it saves its state at its next tick, with
what the field showed (``field_intervals``) in the sidecar: a live fork's futures start
from it (:mod:`twin.app.live.follow`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from city_models.build import City
from city_models.calibrate import load_demand_variant
from twin.app.live.clock import LiveClock
from twin.engine.metrics import geh as geh  # noqa: PLC0414 - re-exported from its old home
from twin.errors import TwinError

log = logging.getLogger(__name__)

SHADOW_SCENARIO = {
    "name": "shadow",
    "kind": "baseline",
    "seed": 1,
    "demand": {"period": "am_peak"},
    "sim": {"duration_s": 7200.0, "control_interval_s": 1.0, "series_interval_s": 60.0},
}


def shadow_scenario(city: City, demand_variant: str | None = None) -> dict[str, Any]:
    """The shadow's scenario: :data:`SHADOW_SCENARIO`, or with its demand a variant of
    ``city`` (e.g. calibrated to the live counts), on the variant's period. A variant
    the city does not have is a :class:`~twin.errors.ScenarioError` listing those it
    has."""
    if demand_variant is None:
        return SHADOW_SCENARIO
    variant = load_demand_variant(city, demand_variant)
    return {**SHADOW_SCENARIO, "demand": {"variant": variant.name, "period": variant.period}}


@dataclass
class ShadowReport:
    """What the shadow said last."""

    sim_s: float = math.nan
    clock_s: float = math.nan
    lag_s: float = math.nan
    divergence: float = math.nan
    geh_ok_share: float = math.nan
    compared: int = 0
    states_applied: int = 0
    lane_halting: dict[str, float] = field(default_factory=dict)


def _worker(  # noqa: PLR0917 - a process target takes positional arguments
    city_path: str,
    clock: LiveClock,
    scenario: dict[str, Any],
    run_dir: str,
    inbox: Any,
    outbox: Any,
    tick_wall_s: float,
    replies: Any = None,
) -> None:
    """The shadow's process: build the run, then pace it by the clock."""
    from city_models.build import load_city  # noqa: PLC0415 - the worker process only
    from scenarios.loader import parse_scenario  # noqa: PLC0415
    from twin.app.compose import build_run  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING)
    city = load_city(Path(city_path))
    spec = parse_scenario(scenario, source="shadow twin")
    run = build_run(spec, city, seed=spec.seed, run_dir=Path(run_dir))
    run.start()
    session = run.session
    st = session.state
    period = city.manifest.detector_period_s
    lanes = list(st.lane_ids)
    halting = np.zeros(len(lanes))
    t0_clock = clock.now_s()
    begin = spec.sim.begin_s
    sim_counts: dict[int, np.ndarray] = {}  # interval index (sim) -> counts
    reported: dict[tuple[str, int], float] = {}
    det_index = {d: k for k, d in enumerate(st.det_ids)}
    states: dict[str, str] = {}
    applied = 0
    last_end = -1.0
    saves: list[tuple[int, dict[str, Any]]] = []
    try:
        while True:
            stop = False
            with contextlib.suppress(queue.Empty):
                while True:
                    msg = inbox.get_nowait()
                    if msg[0] == "stop":
                        stop = True
                    elif msg[0] == "save":
                        saves.append((msg[1], msg[2]))
                        break  # later states are newer than the save's field intervals
                    elif msg[0] == "state":
                        states[msg[1]] = msg[2]
                    elif msg[0] == "count":
                        _, loop_id, t_end_clock, count = msg
                        k = round((begin + (t_end_clock - t0_clock)) / period)
                        reported[(loop_id, k)] = float(count)
            if stop:
                break
            for tls, state in states.items():
                with contextlib.suppress(Exception):  # a state SUMO refuses is skipped
                    session.set_signal_state(tls, state)
                    applied += 1
            states.clear()
            target = begin + (clock.now_s() - t0_clock)
            run.advance_to(target)
            for token, meta in saves:  # after advancing: the state of the clock's now
                try:
                    path = run.save_state(_save_meta(meta, clock.now_s()))
                    replies.put((token, "saved", str(path), run.t_s))
                except Exception as exc:
                    log.exception("the shadow could not save its state")
                    replies.put((token, "error", f"{type(exc).__name__}: {exc}", run.t_s))
            saves.clear()
            if st.det_interval_end_s > last_end and st.det_interval_end_s > 0:
                last_end = st.det_interval_end_s
                sim_counts[round(last_end / period)] = st.det_count_veh.copy()
            session.read_lane_halting(lanes, halting)
            diffs, total, ok, n = 0.0, 0.0, 0, 0
            for (loop_id, k), count in reported.items():
                sim = sim_counts.get(k)
                j = det_index.get(loop_id)
                if sim is None or j is None or math.isnan(sim[j]):
                    continue
                diffs += abs(sim[j] - count)
                total += count
                ok += geh(sim[j] * 3600 / period, count * 3600 / period) < 5.0
                n += 1
            outbox.put(
                ShadowReport(
                    sim_s=run.t_s,
                    clock_s=clock.now_s(),
                    lag_s=target - run.t_s,
                    divergence=diffs / total if total > 0 else math.nan,
                    geh_ok_share=ok / n if n else math.nan,
                    compared=n,
                    states_applied=applied,
                    lane_halting={ln: float(h) for ln, h in zip(lanes, halting, strict=True) if h},
                )
            )
            time.sleep(tick_wall_s)
    finally:
        run.close()


class ShadowDownError(TwinError):
    """The shadow twin does not run, or did not answer in time."""


def _save_meta(meta: dict[str, Any], now_s: float) -> dict[str, Any]:
    """The sidecar's extra meta for a state saved now (``meta``, e.g. the field's
    intervals when the save was asked for, marked as the live shadow's)."""
    return {**meta, "source": "live_shadow", "clock_s": now_s}


class ShadowTwin:
    """The shadow's handle in the live service (see the module doc).

    Parameters
    ----------
    city_path
        The city.
    clock
        The live clock (the shadow runs at its pace).
    run_dir
        Where SUMO writes.
    tick_wall_s
        How often (wall) it is advanced and reports.
    """

    def __init__(
        self,
        city_path: Path,
        *,
        clock: LiveClock,
        run_dir: Path,
        tick_wall_s: float = 0.5,
        scenario: dict[str, Any] | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.inbox: Any = ctx.Queue()
        self.outbox: Any = ctx.Queue()
        self.replies: Any = ctx.Queue()
        self._token = 0
        self._lock = threading.Lock()
        self._answers: dict[int, tuple[str, str, float]] = {}  # answers read for others
        self.report = ShadowReport()
        self.proc = ctx.Process(
            target=_worker,
            args=(
                str(city_path),
                clock,
                scenario or SHADOW_SCENARIO,
                str(run_dir),
                self.inbox,
                self.outbox,
                tick_wall_s,
                self.replies,
            ),
            name="shadow twin",
            daemon=True,
        )

    def start(self) -> ShadowTwin:
        self.proc.start()
        return self

    def feed_state(self, tls: str, state: str) -> None:
        self.inbox.put(("state", tls, state))

    def feed_count(self, loop_id: str, t_end_s: float, count_veh: float) -> None:
        self.inbox.put(("count", loop_id, t_end_s, count_veh))

    def request_save(self, meta: dict[str, Any] | None = None) -> int:
        """Ask the shadow to save its state at its next tick (SUMO's state, the sidecar
        with ``meta`` and ``source = "live_shadow"``), after the states fed before this
        call and before any fed after it; returns the request's token for
        :meth:`wait_saved`. Quick: call it on the service's loop, where the states are
        fed, so ``meta`` and the states SUMO shows agree."""
        if not self.proc.is_alive():
            raise ShadowDownError("The shadow twin does not run (it stopped or failed to start).")
        with self._lock:
            self._token += 1
            token = self._token
        self.inbox.put(("save", token, dict(meta or {})))
        return token

    def wait_saved(self, token: int, *, timeout_s: float = 60.0) -> Path:
        """The state file of save request ``token``. Blocks (call it off the service's
        loop). Raises :class:`ShadowDownError` if the shadow ends or does not answer in
        ``timeout_s``, :class:`~twin.errors.TwinError` if it could not save."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if token in self._answers:
                    kind, text, t_s = self._answers.pop(token)
                    break
                try:
                    got, kind, text, t_s = self.replies.get_nowait()
                except queue.Empty:
                    got = None
                else:
                    if got != token:
                        self._answers[got] = (kind, text, t_s)  # another request's
                        continue
                    break
            if time.monotonic() > deadline or not self.proc.is_alive():
                raise ShadowDownError(
                    f"The shadow twin did not save its state within {timeout_s:g} s"
                    f"{'' if self.proc.is_alive() else ' (its process ended)'}."
                )
            time.sleep(0.05)
        if kind != "saved":
            raise TwinError(f"The shadow twin could not save its state at t={t_s:g} s: {text}")
        return Path(text)

    def poll(self) -> ShadowReport:
        """The newest report (the last one if nothing new came)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.report = self.outbox.get_nowait()
        return self.report

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.is_alive():
            self.inbox.put(("stop",))
            self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5.0)
