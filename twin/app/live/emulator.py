"""A controller emulator: every city signal as an NTCIP 1202 SNMP agent on loopback.

``twin emulate-controllers --city DIR`` (or ``python -m twin.app.live.emulator``) runs
one process that serves each signal of the city as its own SNMPv2c agent on its own UDP
port. Each emulated controller

- runs the city's own plan in real time (the plan's greens, its yellow and all-red; the
  cycle aligned to the plan's offset on the shared :class:`~.clock.LiveClock`);
- obeys the center's phase control (``phaseControlGroup``): *Hold* keeps the green of
  the held phase, *ForceOff* ends it once the controller's own minimum green has run,
  *VehCall* (with *Omit*) chooses the next phase when a green ends (decided at the
  yellow's onset, like a real controller);
- answers ``phaseStatusGroup{Reds,Yellows,Greens}`` and its phase timing, and accepts
  timing writes within the NTCIP ranges;
- runs the fail-safe: when the center has not written for ``unitBackupTime`` seconds it
  drops every hold, force-off, omit and call, restores its programmed timing and runs
  its own plan;
- carries its own conflict monitor (:mod:`.mmu`), asked before every change: a change
  that would show conflicting greens or cut a minimum green, a yellow or an all-red is
  logged and refused (the controller keeps the interval it is in and asks again).

An admin port (JSON lines over TCP on loopback) lets tests and the demo read the
monitor's verdict and each controller's history, mute a controller (it stops
answering but keeps running its plan) or restart one (it forgets the center's control,
its backup time and timing writes; the interval in progress runs on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import signal
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api as snmp_api
from pysnmp.proto.api import v2c

from city_models.build import City, load_city
from city_models.manifest import SignalSpec
from city_models.plan_check import all_red_promise_s
from twin.app.live import ntcip
from twin.app.live.clock import LiveClock, midnight_utc_s
from twin.app.live.mmu import MonitorRules, Refusal, SignalMonitor, monitor_rules

log = logging.getLogger(__name__)

Interval = Literal["green", "yellow", "all_red"]
DEFAULT_BACKUP_TIME_S = 10
RETRY_S = 0.1
"""After a refused change the controller asks its monitor again this much later."""
HISTORY = 20_000
DEFAULT_COMMUNITY = "citytwin"
VERBS = tuple(ntcip.CONTROL_VERBS)


# --------------------------------------------------------------------------- timing
@dataclass
class PhaseTiming:
    """One NTCIP phase's timing, in the standard's units."""

    walk_s: int
    ped_clear_s: int
    min_green_s: int
    max1_s: int
    yellow_ds: int
    red_clear_ds: int

    def get(self, name: str) -> int:
        return int(getattr(self, _TIMING_FIELDS[name]))

    def set(self, name: str, value: int) -> None:
        setattr(self, _TIMING_FIELDS[name], int(value))


_TIMING_FIELDS = {
    "phaseWalk": "walk_s",
    "phasePedestrianClear": "ped_clear_s",
    "phaseMinimumGreen": "min_green_s",
    "phaseMaximum1": "max1_s",
    "phaseYellowChange": "yellow_ds",
    "phaseRedClear": "red_clear_ds",
}
WALK_S = 7


def programmed_timing(sig: SignalSpec) -> list[PhaseTiming]:
    """Per stage, the timing a controller is programmed with from the city's plan."""
    phases = sig.phases
    yellow = min((p.duration_s for p in phases if p.kind == "yellow"), default=3.0)
    all_red = min((p.duration_s for p in phases if p.kind == "all_red"), default=2.0)
    out = []
    for p in phases:
        if p.kind != "green":
            continue
        walk = WALK_S if p.ped_min_green_s > 0 else 0
        out.append(
            PhaseTiming(
                walk_s=walk,
                ped_clear_s=max(0, math.ceil(p.ped_min_green_s - walk - 1e-9)),
                min_green_s=max(1, math.ceil(max(p.min_green_s, p.ped_min_green_s) - 1e-9)),
                max1_s=max(1, round(p.duration_s)),
                yellow_ds=round(yellow * 10),
                red_clear_ds=round(all_red * 10),
            )
        )
    return out


def default_stage_phases(sig: SignalSpec) -> list[tuple[int, ...]]:
    """The emulator's phase numbering: stage ``k`` is NTCIP phase ``k + 1``."""
    n = sum(1 for p in sig.phases if p.kind == "green")
    return [(k + 1,) for k in range(n)]


# --------------------------------------------------------------------------- controller
@dataclass
class Shown:
    """One change the controller showed."""

    t_s: float
    state: str
    interval: Interval
    stage: int
    target: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t_s, 4),
            "state": self.state,
            "interval": self.interval,
            "stage": self.stage,
            "target": self.target,
        }


class EmulatedController:
    """One emulated NTCIP 1202 controller running a city signal's plan.

    Parameters
    ----------
    sig
        The city's signal (its phases are the controller's own plan).
    stage_phases
        NTCIP phase numbers of each stage (the plan's green stages, in order).
    rules
        Its conflict monitor's rules (:func:`.mmu.monitor_rules`).
    now_s
        Power-up time on the live clock: the plan starts where its offset puts it.
    backup_time_s
        ``unitBackupTime`` at power-up.
    """

    def __init__(
        self,
        sig: SignalSpec,
        *,
        stage_phases: Sequence[Sequence[int]],
        rules: MonitorRules,
        now_s: float,
        backup_time_s: int = DEFAULT_BACKUP_TIME_S,
    ) -> None:
        greens = [p for p in sig.phases if p.kind == "green"]
        if len(stage_phases) != len(greens):
            raise ValueError(
                f"{sig.id}: {len(stage_phases)} stages mapped to phases, the plan has {len(greens)}"
            )
        self.id = sig.id
        self.sig = sig
        self.green_states = [p.state for p in greens]
        self.stage_phases = [tuple(ntcip.check_phase(x) for x in ph) for ph in stage_phases]
        flat = [x for ph in self.stage_phases for x in ph]
        if len(set(flat)) != len(flat):
            raise ValueError(f"{sig.id}: a phase number serves two stages: {self.stage_phases}")
        self.phases = sorted(flat)
        self.stage_of_phase = {x: k for k, ph in enumerate(self.stage_phases) for x in ph}
        self.groups = sorted({ntcip.group_bit(x)[0] for x in self.phases})
        self.ror = frozenset(i for p in sig.phases for i, ch in enumerate(p.state) if ch == "s")
        self.programmed = programmed_timing(sig)
        self.timing = {x: self._copy(self.programmed[k]) for x, k in self.stage_of_phase.items()}
        self.default_backup_time_s = backup_time_s
        self.backup_time_s = backup_time_s
        self.ctl: dict[str, dict[int, int]] = {v: dict.fromkeys(self.groups, 0) for v in VERBS}
        self.center_on = False
        self.last_center_s: float | None = None
        self.control_since_s = -math.inf
        self.retry_at_s = -math.inf
        self.backups = 0
        self.restarts = 0
        self.muted = False
        self.history: deque[Shown] = deque(maxlen=HISTORY)
        self.events: deque[dict[str, Any]] = deque(maxlen=2000)
        self.green_held = False  # the green showing now was held by the center
        self.max_held_s = 0.0  # the longest green held by the center
        self.held_greens: deque[tuple[int, float]] = deque(maxlen=HISTORY)
        """(stage, seconds) of every green the center held, when it ended."""
        interval, stage, entered = self._plan_position(now_s)
        self.interval: Interval = interval
        self.stage = stage
        self.target = stage if interval == "green" else (stage + 1) % len(greens)
        self.entered_s = entered
        self.monitor = SignalMonitor(rules, self.state, entered)
        self.history.append(Shown(entered, self.state, interval, stage, self.target))

    @staticmethod
    def _copy(t: PhaseTiming) -> PhaseTiming:
        return PhaseTiming(**vars(t))

    def _plan_position(self, t_s: float) -> tuple[Interval, int, float]:
        """Where the plan stands at ``t_s``: interval, stage (being left), its start."""
        phases = self.sig.phases
        cycle = sum(p.duration_s for p in phases)
        pos = (t_s - self.sig.offset_s) % cycle
        stage = -1
        for p in phases:
            if p.kind == "green":
                stage += 1
            if pos < p.duration_s:
                return p.kind, max(stage, 0), t_s - pos
            pos -= p.duration_s
        return "green", 0, t_s

    # ------------------------------------------------------------------ what it shows
    def show(self, interval: Interval, stage: int, target: int) -> str:
        """The link states of an interval (the change from ``stage`` to ``target``)."""
        cur = self.green_states[stage]
        if interval == "green":
            return cur
        nxt = self.green_states[target]
        out = []
        for i, (a, b) in enumerate(zip(cur, nxt, strict=True)):
            if a in "Gg" and b in "Gg":
                out.append("G" if a == b == "G" else "g")
            elif a in "Gg" and interval == "yellow":
                out.append("y")
            else:
                out.append("s" if i in self.ror else "r")
        return "".join(out)

    @property
    def state(self) -> str:
        return self.show(self.interval, self.stage, self.target)

    def status_mask(self, kind: str, group: int) -> int:
        """``phaseStatusGroup`` ``kind`` (reds, yellows, greens) of ``group`` now."""
        lit = self.stage_phases[self.stage]
        if kind == "greens":
            phases = lit if self.interval == "green" else ()
        elif kind == "yellows":
            phases = lit if self.interval == "yellow" else ()
        else:
            on = set(lit) if self.interval in ("green", "yellow") else set()
            phases = tuple(x for x in self.phases if x not in on)
        return ntcip.masks(phases).get(group, 0)

    # ------------------------------------------------------------------ control
    def _bits(self, verb: str, stage: int) -> bool:
        masks = self.ctl[verb]
        return any(
            masks.get(g, 0) >> b & 1 for g, b in map(ntcip.group_bit, self.stage_phases[stage])
        )

    def _stage_timing(self, stage: int) -> PhaseTiming:
        return self.timing[self.stage_phases[stage][0]]

    def _next_change_s(self) -> float:
        t = self._stage_timing(self.stage)
        if self.interval == "yellow":
            end = self.entered_s + t.yellow_ds / 10.0
        elif self.interval == "all_red":
            end = self.entered_s + t.red_clear_ds / 10.0
        elif self.center_on and self._bits("hold", self.stage):
            return math.inf
        elif self.center_on and self._bits("force_off", self.stage):
            end = max(self.entered_s + t.min_green_s, self.control_since_s)
        else:
            end = max(self.entered_s + t.max1_s, self.control_since_s)
        return max(end, self.retry_at_s)

    def _backup_due_s(self) -> float:
        if not self.center_on or self.last_center_s is None:
            return math.inf
        return self.last_center_s + self.backup_time_s

    def next_event_s(self) -> float:
        return min(self._next_change_s(), self._backup_due_s())

    def _choose_next(self) -> int:
        n = len(self.stage_phases)
        order = [(self.stage + d) % n for d in range(1, n)] or [self.stage]
        if not self.center_on:
            return order[0]
        open_ = [s for s in order if not self._all_omitted(s)]
        called = [s for s in open_ if self._bits("veh_call", s)]
        return called[0] if called else (open_[0] if open_ else order[0])

    def _all_omitted(self, stage: int) -> bool:
        masks = self.ctl["omit"]
        return all(
            masks.get(g, 0) >> b & 1 for g, b in map(ntcip.group_bit, self.stage_phases[stage])
        )

    def tick(self, t_s: float) -> None:
        """Run the controller up to ``t_s`` (every change dated when it fell due)."""
        for _ in range(10_000):
            due = self.next_event_s()
            if due > t_s:
                break
            if due == self._backup_due_s():
                self._backup(due)
            else:
                self._change(due)
        self._track_hold(t_s)

    def _change(self, at_s: float) -> None:
        if self.interval == "green":
            nxt = self._choose_next()
            interval: Interval = "yellow"
            stage, target = self.stage, nxt
        elif self.interval == "yellow":
            interval, stage, target = "all_red", self.stage, self.target
            again = self._choose_next()
            if again != target and self.show("yellow", stage, again) == self.show(
                "yellow", stage, target
            ):
                # the center re-aimed the change during a yellow whose lamps are the same
                # for both targets (the guard's rule too): the all-red leads there
                target = again
        else:
            interval, stage, target = "green", self.target, self.target
        new = self.show(interval, stage, target)
        refused = self.monitor.propose(at_s, new)
        if refused:
            self.retry_at_s = at_s + RETRY_S
            self.events.append(
                {"t_s": at_s, "what": "mmu_refused", "rules": sorted({r.rule for r in refused})}
            )
            return
        self.retry_at_s = -math.inf
        if self.interval == "green" and self.green_held:
            self.max_held_s = max(self.max_held_s, at_s - self.entered_s)
            self.held_greens.append((self.stage, round(at_s - self.entered_s, 3)))
        self.green_held = False
        self.interval, self.stage, self.target, self.entered_s = interval, stage, target, at_s
        self.history.append(Shown(at_s, new, interval, stage, target))

    def _track_hold(self, t_s: float) -> None:
        if self.interval == "green" and self.center_on and self._bits("hold", self.stage):
            self.green_held = True
        if self.green_held:
            self.max_held_s = max(self.max_held_s, t_s - self.entered_s)

    def _drop_center_control(self, at_s: float) -> None:
        self.ctl = {v: dict.fromkeys(self.groups, 0) for v in VERBS}
        self.center_on = False
        self.control_since_s = at_s
        for x, k in self.stage_of_phase.items():
            self.timing[x] = self._copy(self.programmed[k])

    def _backup(self, at_s: float) -> None:
        silent = at_s - (self.last_center_s or at_s)
        self._drop_center_control(at_s)
        self.backups += 1
        self.events.append({"t_s": at_s, "what": "backup", "silent_s": silent})
        log.warning(
            "%s: no word from the center for %.1f s (unitBackupTime %d s): holds, "
            "force-offs, omits and calls dropped; running its own plan",
            self.id,
            silent,
            self.backup_time_s,
        )

    def restart(self, t_s: float) -> None:
        """A restart of the controller's software: the center's control, the backup time
        and timing writes are forgotten; the interval in progress runs on."""
        self.tick(t_s)
        self._drop_center_control(t_s)
        self.last_center_s = None
        self.backup_time_s = self.default_backup_time_s
        self.restarts += 1
        self.events.append({"t_s": t_s, "what": "restart"})
        log.warning("%s: restarted (center control forgotten)", self.id)

    # ------------------------------------------------------------------ SNMP objects
    def get(self, oid: ntcip.Oid) -> int | None:  # noqa: PLR0911
        """The value of ``oid`` now (``None``: no such object or instance)."""
        if oid == ntcip.UNIT_BACKUP_TIME:
            return self.backup_time_s
        head, col, idx = oid[:-2], oid[-2] if len(oid) >= 2 else -1, oid[-1]
        if head == ntcip.PHASE_ENTRY:
            name = _column_name(ntcip.PHASE_TIMING, col)
            if name is None or idx not in self.timing:
                return None
            return self.timing[idx].get(name)
        if head == ntcip.PHASE_STATUS_GROUP_ENTRY:
            kind = {2: "reds", 3: "yellows", 4: "greens"}.get(col)
            if kind is None or idx not in self.groups:
                return None
            return self.status_mask(kind, idx)
        if head == ntcip.PHASE_CONTROL_GROUP_ENTRY:
            verb = {2: "omit", 4: "hold", 5: "force_off", 6: "veh_call"}.get(col)
            if verb is None or idx not in self.groups:
                return None
            return self.ctl[verb][idx]
        return None

    def check_set(self, oid: ntcip.Oid, value: object) -> str | None:  # noqa: PLR0911
        """Why ``oid := value`` cannot be set (an SNMP error name), or ``None``."""
        if isinstance(value, bool) or not isinstance(value, int):
            return "wrongType"
        if oid == ntcip.UNIT_BACKUP_TIME:
            col = ntcip.BACKUP_TIME
            return None if col.lo <= value <= col.hi else "wrongValue"
        head, idx = oid[:-2], oid[-1]
        col_no = oid[-2] if len(oid) >= 2 else -1
        if head == ntcip.PHASE_ENTRY:
            name = _column_name(ntcip.PHASE_TIMING, col_no)
            if name is None or idx not in self.timing:
                return "noCreation"
            c = ntcip.PHASE_TIMING[name]
            return None if c.lo <= value <= c.hi else "wrongValue"
        if head == ntcip.PHASE_CONTROL_GROUP_ENTRY:
            if col_no not in (2, 4, 5, 6) or idx not in self.groups:
                return "noCreation"
            if not 0 <= value <= 255:
                return "wrongValue"
            known = ntcip.masks(x for x in self.phases if ntcip.group_bit(x)[0] == idx).get(idx, 0)
            return None if value & ~known == 0 else "wrongValue"  # a phase it does not have
        if head == ntcip.PHASE_STATUS_GROUP_ENTRY:
            return "notWritable"
        return "noCreation"

    def apply_set(self, t_s: float, pairs: Sequence[tuple[ntcip.Oid, int]]) -> None:
        """Apply checked writes, all at once (the center just spoke: the backup timer
        starts again)."""
        self.tick(t_s)
        for oid, value in pairs:
            if oid == ntcip.UNIT_BACKUP_TIME:
                self.backup_time_s = value
                continue
            head, col, idx = oid[:-2], oid[-2], oid[-1]
            if head == ntcip.PHASE_ENTRY:
                name = _column_name(ntcip.PHASE_TIMING, col)
                if name is not None:
                    self.timing[idx].set(name, value)
            else:
                verb = {2: "omit", 4: "hold", 5: "force_off", 6: "veh_call"}[col]
                self.ctl[verb][idx] = value
        if not self.center_on:
            self.events.append({"t_s": t_s, "what": "center_control"})
        self.center_on = True
        self.last_center_s = t_s
        self.control_since_s = t_s
        self.tick(t_s)

    def snapshot(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "stage": self.stage,
            "target": self.target,
            "entered_s": self.entered_s,
            "state": self.state,
            "center_on": self.center_on,
            "backup_time_s": self.backup_time_s,
            "backups": self.backups,
            "restarts": self.restarts,
            "muted": self.muted,
            "control": {v: dict(m) for v, m in self.ctl.items()},
            "max_held_s": round(self.max_held_s, 3),
            "refusals": len(self.monitor.refusals),
        }


def _column_name(columns: Mapping[str, ntcip.Column], col: int) -> str | None:
    return next((name for name, c in columns.items() if c.column == col), None)


# --------------------------------------------------------------------------- SNMP agent
_P = snmp_api.PROTOCOL_MODULES[snmp_api.SNMP_VERSION_2C]
_ERRORS = {
    "noError": 0,
    "tooBig": 1,
    "genErr": 5,
    "wrongType": 7,
    "wrongValue": 10,
    "noCreation": 11,
    "notWritable": 17,
}


class _Agent(asyncio.DatagramProtocol):
    """The SNMPv2c agent of one emulated controller."""

    def __init__(self, emulator: Emulator, ctl: EmulatedController) -> None:
        self.emulator = emulator
        self.ctl = ctl
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        em = self.emulator
        if self.ctl.muted:
            return
        try:
            reply = em.answer(self.ctl, data)
        except (PyAsn1Error, ValueError, TypeError, KeyError, IndexError) as exc:
            em.garbage += 1
            log.warning("%s: unreadable SNMP message from %s dropped: %s", self.ctl.id, addr, exc)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


# --------------------------------------------------------------------------- the process
@dataclass
class Emulator:
    """Every signal of a city as an emulated controller (one SNMP agent per signal)."""

    city: City
    clock: LiveClock
    host: str = "127.0.0.1"
    base_port: int = 0
    community: str = DEFAULT_COMMUNITY
    backup_time_s: int = DEFAULT_BACKUP_TIME_S
    stage_phases: Mapping[str, Sequence[Sequence[int]]] = field(default_factory=dict)
    controllers: dict[str, EmulatedController] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    garbage: int = 0
    wrong_community: int = 0
    requests: int = 0
    sets: int = 0
    set_errors: int = 0
    _handles: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    def build(self) -> None:
        now = self.clock.now_s()
        rules = monitor_rules(
            self.city.net,
            self.city.manifest.signals,
            all_red_promise_s=all_red_promise_s(self.city.manifest),
        )
        for sig in self.city.manifest.signals:
            phases = self.stage_phases.get(sig.id) or default_stage_phases(sig)
            self.controllers[sig.id] = EmulatedController(
                sig,
                stage_phases=phases,
                rules=rules[sig.id],
                now_s=now,
                backup_time_s=self.backup_time_s,
            )

    async def start(self) -> None:
        """Open every controller's UDP port and start their clocks."""
        if not self.controllers:
            self.build()
        loop = asyncio.get_running_loop()
        for k, (tls, ctl) in enumerate(self.controllers.items()):
            port = self.base_port + k if self.base_port else 0
            transport, _ = await loop.create_datagram_endpoint(
                lambda ctl=ctl: _Agent(self, ctl),  # type: ignore[misc]
                local_addr=(self.host, port),
            )
            self._transports.append(transport)
            self.ports[tls] = int(transport.get_extra_info("sockname")[1])
            self._schedule(tls)

    def close(self) -> None:
        for h in self._handles.values():
            h.cancel()
        for tr in self._transports:
            tr.close()

    def _schedule(self, tls: str) -> None:
        ctl = self.controllers[tls]
        old = self._handles.pop(tls, None)
        if old is not None:
            old.cancel()
        due = ctl.next_event_s()
        delay = 1.0 if not math.isfinite(due) else min(self.clock.delay_s(due), 1.0)
        loop = asyncio.get_running_loop()
        self._handles[tls] = loop.call_later(delay + 0.0005, self._wake, tls)

    def _wake(self, tls: str) -> None:
        self.controllers[tls].tick(self.clock.now_s())
        self._schedule(tls)

    # ------------------------------------------------------------------ SNMP
    def answer(self, ctl: EmulatedController, data: bytes) -> bytes | None:
        """The reply to one request (``None``: nothing is answered)."""
        self.requests += 1
        version = int(snmp_api.decodeMessageVersion(data))
        if version != snmp_api.SNMP_VERSION_2C:
            raise ValueError(f"SNMP version {version} (only v2c is served)")
        msg, _rest = decoder.decode(data, asn1Spec=_P.Message())
        if bytes(_P.apiMessage.get_community(msg)) != self.community.encode():
            self.wrong_community += 1
            log.warning("%s: request with a wrong community dropped", ctl.id)
            return None
        pdu = _P.apiMessage.get_pdu(msg)
        rsp = _P.apiMessage.get_response(msg)
        rpdu = _P.apiMessage.get_pdu(rsp)
        now = self.clock.now_s()
        req = [(tuple(oid), val) for oid, val in _P.apiPDU.get_varbinds(pdu)]
        if pdu.isSameTypeWith(_P.GetRequestPDU()):
            ctl.tick(now)
            out = []
            for oid, _val in req:
                value = ctl.get(oid)
                out.append((oid, v2c.NoSuchInstance() if value is None else _P.Integer(value)))
            _P.apiPDU.set_varbinds(rpdu, out)
        elif pdu.isSameTypeWith(_P.SetRequestPDU()):
            self.sets += 1
            pairs: list[tuple[ntcip.Oid, int]] = []
            for k, (oid, val) in enumerate(req):
                value = int(val) if isinstance(val, univ.Integer) else val
                why = ctl.check_set(oid, value)
                if why is not None:
                    self.set_errors += 1
                    log.warning(
                        "%s: SET %s = %r refused (%s); nothing applied",
                        ctl.id,
                        ntcip.describe(oid),
                        value,
                        why,
                    )
                    _P.apiPDU.set_error_status(rpdu, _ERRORS[why])
                    _P.apiPDU.set_error_index(rpdu, k + 1)
                    _P.apiPDU.set_varbinds(rpdu, req)
                    return bytes(encoder.encode(rsp))
                pairs.append((oid, int(value)))
            ctl.apply_set(now, pairs)
            self._schedule(ctl.id)
            _P.apiPDU.set_varbinds(rpdu, req)
        else:
            _P.apiPDU.set_error_status(rpdu, _ERRORS["genErr"])
            _P.apiPDU.set_varbinds(rpdu, req)
        return bytes(encoder.encode(rsp))

    # ------------------------------------------------------------------ verdicts
    def refusals(self) -> list[Refusal]:
        return [r for c in self.controllers.values() for r in c.monitor.refusals]

    def verdict(self) -> dict[str, Any]:
        refused = self.refusals()
        by_rule: dict[str, int] = {}
        for r in refused:
            by_rule[r.rule] = by_rule.get(r.rule, 0) + 1
        ctls = self.controllers.values()
        return {
            "violations": len(refused),
            "by_rule": by_rule,
            "listed": [str(r) for r in refused[:20]],
            "changes_checked": sum(c.monitor.changes for c in ctls),
            "greens_judged": sum(c.monitor.greens_judged for c in ctls),
            "yellows_judged": sum(c.monitor.yellows_judged for c in ctls),
            "backups": sum(c.backups for c in ctls),
            "restarts": sum(c.restarts for c in ctls),
            "max_held_s": max((c.max_held_s for c in ctls), default=0.0),
            "requests": self.requests,
            "sets": self.sets,
            "set_errors": self.set_errors,
            "garbage": self.garbage,
            "wrong_community": self.wrong_community,
        }

    def admin(self, cmd: Mapping[str, Any]) -> dict[str, Any]:  # noqa: PLR0911
        """One admin command (``status``, ``verdict``, ``history``, ``events``, ``mute``,
        ``unmute``, ``restart``, ``now``)."""
        what = cmd.get("cmd")
        now = self.clock.now_s()
        for ctl in self.controllers.values():
            ctl.tick(now)
        if what == "now":
            return {"now_s": now}
        if what == "verdict":
            return {"now_s": now, **self.verdict()}
        if what == "status":
            return {"now_s": now, "signals": {t: c.snapshot() for t, c in self.controllers.items()}}
        tls = cmd.get("signal")
        if not isinstance(tls, str) or tls not in self.controllers:
            return {"error": f"unknown signal {tls!r}"}
        ctl = self.controllers[tls]
        if what == "history":
            since = float(cmd.get("since_s", -math.inf))
            return {"now_s": now, "history": [s.as_dict() for s in ctl.history if s.t_s >= since]}
        if what == "events":
            return {"now_s": now, "events": list(ctl.events)}
        if what == "held":
            current = None
            if ctl.interval == "green" and ctl.green_held:
                current = [ctl.stage, round(now - ctl.entered_s, 3)]
            return {"now_s": now, "held": list(ctl.held_greens), "current": current}
        if what in ("mute", "unmute"):
            ctl.muted = what == "mute"
            log.warning("%s: %s (fault injection)", tls, what)
            return {"now_s": now, "muted": ctl.muted}
        if what == "restart":
            ctl.restart(now)
            self._schedule(tls)
            return {"now_s": now, "restarted": tls}
        return {"error": f"unknown command {what!r}"}

    async def serve_admin(self, host: str, port: int) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    try:
                        cmd = json.loads(line)
                        reply = (
                            self.admin(cmd) if isinstance(cmd, dict) else {"error": "not an object"}
                        )
                    except json.JSONDecodeError as exc:
                        reply = {"error": f"not JSON: {exc}"}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, host, port)

    def field_config(self, *, backup_time_s: int = 5, heartbeat_s: float = 1.0) -> dict[str, Any]:
        """A FIELD.toml for a center facing these controllers."""
        return {
            "backup_time_s": backup_time_s,
            "heartbeat_s": heartbeat_s,
            "timeout_s": 0.3,
            "retries": 1,
            "down_after": 3,
            "community": self.community,
            "signals": {
                tls: {
                    "host": self.host,
                    "port": self.ports[tls],
                    "phases": [list(p) if len(p) > 1 else p[0] for p in c.stage_phases],
                }
                for tls, c in self.controllers.items()
            },
        }


async def admin_call(
    host: str, port: int, cmd: Mapping[str, Any], *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """One admin command to a running emulator."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write(json.dumps(dict(cmd)).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        out: dict[str, Any] = json.loads(line)
        return out
    finally:
        writer.close()


def admin_call_sync(
    host: str, port: int, cmd: Mapping[str, Any], *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """:func:`admin_call` from synchronous code (tests, the CLI)."""
    import socket  # noqa: PLC0415 - only the synchronous helper needs it

    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(json.dumps(dict(cmd)).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    out: dict[str, Any] = json.loads(buf)
    return out


async def run_emulator(
    city: City,
    *,
    clock: LiveClock,
    host: str = "127.0.0.1",
    base_port: int = 0,
    admin_port: int = 0,
    community: str = DEFAULT_COMMUNITY,
    backup_time_s: int = DEFAULT_BACKUP_TIME_S,
    field_out: Path | None = None,
    field_backup_time_s: int = 5,
    field_heartbeat_s: float = 1.0,
    duration_s: float | None = None,
    ready: Any = None,
) -> dict[str, Any]:
    """Serve until SIGINT/SIGTERM (or ``duration_s`` wall seconds); returns the verdict.

    Prints one JSON line on stdout when ready: ``{"ready": true, "admin_port", "ports",
    "field"}``.
    """
    em = Emulator(
        city,
        clock,
        host=host,
        base_port=base_port,
        community=community,
        backup_time_s=backup_time_s,
    )
    await em.start()
    server = await em.serve_admin(host, admin_port)
    admin = int(server.sockets[0].getsockname()[1])
    if field_out is not None:
        field_out.write_text(
            "# FIELD.toml written by twin emulate-controllers: the center's view of the field\n"
            + tomli_w.dumps(
                em.field_config(backup_time_s=field_backup_time_s, heartbeat_s=field_heartbeat_s)
            ),
            encoding="utf-8",
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    line = {
        "ready": True,
        "admin_port": admin,
        "ports": em.ports,
        "field": str(field_out) if field_out else None,
        "signals": len(em.controllers),
    }
    (ready or sys.stdout).write(json.dumps(line) + "\n")
    (ready or sys.stdout).flush()
    log.info(
        "emulating %d controllers of city %s; admin on %s:%d",
        len(em.controllers),
        city.name,
        host,
        admin,
    )
    try:
        if duration_s is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        server.close()
        em.close()
    verdict = em.verdict()
    log.info(
        "MMU verdict: %d violation(s) refused in %d changes checked",
        verdict["violations"],
        verdict["changes_checked"],
    )
    return verdict


def clock_from_args(epoch: float | None, speed: float, origin: float | None) -> LiveClock:
    """The live clock from ``--epoch/--speed/--origin`` (default: time of day)."""
    if epoch is None:
        return LiveClock.time_of_day(speed)
    if origin is None:
        origin = epoch - midnight_utc_s(epoch)
    return LiveClock(epoch_wall_s=epoch, speed=speed, origin_s=origin)


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m twin.app.live.emulator --city DIR ...``"""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--city", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--base-port", type=int, default=0)
    ap.add_argument("--admin-port", type=int, default=0)
    ap.add_argument("--community", default=DEFAULT_COMMUNITY)
    ap.add_argument("--backup-time", type=int, default=DEFAULT_BACKUP_TIME_S)
    ap.add_argument("--write-field", type=Path, default=None)
    ap.add_argument("--field-backup-time", type=int, default=5)
    ap.add_argument("--field-heartbeat", type=float, default=1.0)
    ap.add_argument("--epoch", type=float, default=None)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--origin", type=float, default=None)
    ap.add_argument("--duration", type=float, default=None)
    args = ap.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    city = load_city(args.city)
    verdict = asyncio.run(
        run_emulator(
            city,
            clock=clock_from_args(args.epoch, args.speed, args.origin),
            host=args.host,
            base_port=args.base_port,
            admin_port=args.admin_port,
            community=args.community,
            backup_time_s=args.backup_time,
            field_out=args.write_field,
            field_backup_time_s=args.field_backup_time,
            field_heartbeat_s=args.field_heartbeat,
            duration_s=args.duration,
        )
    )
    sys.stdout.write(json.dumps({"verdict": verdict}) + "\n")
    sys.stdout.flush()
    return 0 if verdict["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
