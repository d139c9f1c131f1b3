"""The field adapter: the guard's display over NTCIP 1202 phase control.

The center's guard (:class:`~signal_control.guard.SignalGuard`, through the same
:class:`~signal_control.port.GuardedPort` a simulated run uses) decides every interval;
the adapter turns each state it shows into phase control on the field controller:

============================  ==============================================================
the guard shows               the controller is told (``phaseControlGroup``)
============================  ==============================================================
green of stage *k*            **Hold** *k*'s phases (no force-off, no call, no omit)
yellow *k* -> *j*             **ForceOff** *k*, **VehCall** *j*, **Omit** every other phase
all-red *k* -> *j*            the same (the controller is timing its own all-red)
hand-back in the green of *k*  Hold *k* for the green's remaining time, then nothing at all
============================  ==============================================================

The controller times its own minimum green, yellow and all-red, so a command that
arrives a few milliseconds after the guard's change never shortens an interval: a
force-off before the controller's minimum green is deferred by the controller, and its
own monitor refuses anything unsafe. Every write carries ``unitBackupTime`` and the
whole control state (so a lost write is repaired by the next); the writer sends at
least every ``heartbeat_s`` (well inside the backup time), so a controller that stops
hearing from the center drops its holds and runs its own plan.

:class:`FieldDisplay` is the guard's display (``set_signal_state``, ``set_program``,
``set_phase``); :class:`FieldPort` is the ``GuardedPort`` over it, which also knows
which controllers are down (they take no commands: the center's planners see them as
local); :class:`ControllerLink` is one controller's writer, heartbeat, read-back and
down/up detection; :class:`Field` connects, takes over and runs them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from signal_control.guard import Foes, GuardPlan, Interval
from signal_control.port import GuardedPort, SignalReleasedError, SignalStatus
from twin.app.live import ntcip
from twin.app.live.aio import cancel_and_wait
from twin.app.live.audit import AuditLog
from twin.app.live.clock import LiveClock
from twin.app.live.field import FieldConfig
from twin.app.live.snmp import ControllerError, SnmpLink

log = logging.getLogger(__name__)

LinkState = Literal["connecting", "up", "down", "refused", "released"]
TAKEOVER_WAIT_S = 5.0
"""Slack (wall) on top of 1.5 cycles that a take-over waits for a green's onset."""
ONSET_POLL_S = 0.05
"""How often (wall) a controller in a yellow or all-red is read while waiting for its
next green (a take-over happens at a green's onset)."""
GREEN_POLL_S = 0.5
"""How often (wall) a controller in a green is read while waiting for its next onset."""
MISMATCH_GRACE_S = 0.6
"""A read-back is not judged this soon (wall) after the guard changed the state."""
READ_BACK_EVERY = 3
"""The controller's lamps are read back after every third heartbeat."""
MISMATCHES_TO_RETAKE = 2
"""Read-backs in a row that disagree with the guard before the signal is taken over
again from what the controller shows."""


class ControllerDownError(SignalReleasedError):
    """A command to a signal whose controller is marked down: refused, nothing queued."""


@dataclass(frozen=True)
class Control:
    """The phase control written to one controller (phase numbers per verb)."""

    hold: frozenset[int] = frozenset()
    force_off: frozenset[int] = frozenset()
    veh_call: frozenset[int] = frozenset()
    omit: frozenset[int] = frozenset()

    def pairs(self, groups: Sequence[int]) -> list[tuple[ntcip.Oid, int]]:
        out = []
        for verb in ("omit", "hold", "force_off", "veh_call"):
            masks = ntcip.masks(getattr(self, verb))
            out += [(ntcip.control_oid(verb, g), masks.get(g, 0)) for g in groups]
        return out

    def as_dict(self) -> dict[str, list[int]]:
        return {v: sorted(getattr(self, v)) for v in ("hold", "force_off", "veh_call", "omit")}


NOTHING = Control()


@dataclass
class Shown:
    """What the guard shows at one signal, as the display understood it."""

    interval: Interval
    stage: int
    target: int
    since_s: float
    since_wall: float
    state: str = ""


@dataclass
class _Signal:
    plan: GuardPlan
    stage_phases: list[tuple[int, ...]]
    groups: list[int]
    shown: Shown | None = None
    desired: Control = NOTHING
    version: int = 0
    causes: list[tuple[str, float]] = field(default_factory=list)
    release_at_s: float | None = None  # hand-back: hold until then, then nothing
    released: bool = False
    max_green_s: tuple[int, ...] | None = None
    """Per stage, the ``phaseMaximum1`` written with every SET once the center timed the
    signal (adaptive control); ``None``: the controller's own timing, not written."""

    def timing_pairs(self) -> list[tuple[ntcip.Oid, int]]:
        if self.max_green_s is None:
            return []
        return [
            (ntcip.phase_timing_oid("phaseMaximum1", p), g)
            for phases, g in zip(self.stage_phases, self.max_green_s, strict=True)
            for p in phases
        ]

    @property
    def phases(self) -> list[int]:
        return sorted(p for ph in self.stage_phases for p in ph)


class FieldDisplay:
    """The guard's display over phase control (see the module doc).

    Parameters
    ----------
    plans
        Each signal's guard plan.
    stage_phases
        NTCIP phase numbers of each stage, per signal.
    clock
        The live clock.
    """

    def __init__(
        self,
        plans: Mapping[str, GuardPlan],
        stage_phases: Mapping[str, Sequence[tuple[int, ...]]],
        *,
        clock: LiveClock,
    ) -> None:
        self.clock = clock
        self.signals: dict[str, _Signal] = {}
        for tls, plan in plans.items():
            phases = [tuple(p) for p in stage_phases[tls]]
            if len(phases) != plan.n_stages:
                raise ValueError(
                    f"{tls}: {len(phases)} stages mapped, the plan has {plan.n_stages}"
                )
            groups = sorted({ntcip.group_bit(p)[0] for ph in phases for p in ph})
            self.signals[tls] = _Signal(plan, phases, groups)
        self.port: FieldPort | None = None
        self.cause: tuple[str, float] | None = None
        """The report being processed now (id, wall time it was published), if any."""
        self.on_change: Callable[[str], None] = lambda tls: None

    def bind(self, port: FieldPort) -> None:
        self.port = port

    # ------------------------------------------------------------------ SignalDisplay
    def set_signal_state(self, tls_id: str, state: str) -> None:
        sig = self.signals[tls_id]
        interval, stage, target = self._decode(tls_id, sig, state)
        now = self.clock.now_s()
        sig.shown = Shown(interval, stage, target, now, time.time(), state)
        if interval == "green":
            ctl = Control(hold=frozenset(sig.stage_phases[stage]))
        else:
            keep = set(sig.stage_phases[stage]) | set(sig.stage_phases[target])
            ctl = Control(
                force_off=frozenset(sig.stage_phases[stage]),
                veh_call=frozenset(sig.stage_phases[target]),
                omit=frozenset(p for p in sig.phases if p not in keep),
            )
        self._want(tls_id, ctl)

    def set_timing(self, tls_id: str, green_s: Sequence[float] | None) -> None:
        """The greens the guard accepted (``apply_timing``), to be written to the
        controller as each stage's ``phaseMaximum1`` (whole seconds, 1-255), so that its
        own timing follows the center's between commands; ``None``: its programmed
        greens again (the plan's), written at the hand-back."""
        sig = self.signals[tls_id]
        greens = sig.plan.green_s if green_s is None else green_s
        want = tuple(max(1, min(255, math.ceil(g - 1e-9))) for g in greens)
        if want != sig.max_green_s:
            sig.max_green_s = want
            sig.version += 1
        self.on_change(tls_id)

    def set_program(self, tls_id: str, program_id: str) -> None:
        log.info("%s: hand-back to the controller's own program %r asked", tls_id, program_id)
        sig = self.signals[tls_id]
        if sig.max_green_s is not None:  # it was timed by the center: its own greens back
            self.set_timing(tls_id, None)

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        sig = self.signals[tls_id]
        stage = sig.plan.phase_index.index(phase_index)
        sig.release_at_s = self.clock.now_s() + remaining_s
        self._want(tls_id, Control(hold=frozenset(sig.stage_phases[stage])))

    # ------------------------------------------------------------------ helpers
    def _decode(self, tls: str, sig: _Signal, state: str) -> tuple[Interval, int, int]:
        plan = sig.plan
        guard = self.port.guard(tls) if self.port is not None else None
        if (
            guard is not None
            and guard.interval == "green"
            and plan.green_states[guard.stage] == state
        ):
            return "green", guard.stage, guard.stage
        greens = [k for k, s in enumerate(plan.green_states) if s == state]
        if greens and (guard is None or guard.interval == "green"):
            return "green", greens[0], greens[0]
        interval: Interval = "yellow" if "y" in state else "all_red"
        left = sig.shown.stage if sig.shown is not None else (guard.stage if guard else 0)
        target = guard.target if guard is not None else (left + 1) % plan.n_stages
        if plan.show(interval, left, target) != state:  # a late display: trust the state
            cands = [
                (k, j)
                for k in range(plan.n_stages)
                for j in range(plan.n_stages)
                if k != j and plan.show(interval, k, j) == state
            ]
            if cands:
                left, target = next(((k, j) for k, j in cands if k == left), cands[0])
            else:
                log.error("%s: state %r is none of the plan's; showing all-red control", tls, state)
        return interval, left, target

    def _want(self, tls: str, ctl: Control) -> None:
        sig = self.signals[tls]
        if ctl != sig.desired:
            sig.desired = ctl
            sig.version += 1
            if self.cause is not None:
                sig.causes.append(self.cause)
        self.on_change(tls)

    def sync_target(self, tls: str) -> None:
        """The guard re-aimed a change in progress (a skip during a yellow whose lamps
        stay the same): call the new target."""
        sig = self.signals[tls]
        if self.port is None or sig.shown is None or sig.shown.interval == "green":
            return
        guard = self.port.guard(tls)
        if guard.interval != "green" and guard.target != sig.shown.target:
            sig.shown.target = guard.target
            self.set_signal_state(tls, guard.state)

    def take_causes(self, tls: str) -> list[tuple[str, float]]:
        sig = self.signals[tls]
        out, sig.causes = sig.causes, []
        return out


class FieldPort(GuardedPort):
    """The :class:`~signal_control.port.GuardedPort` over field controllers: every
    command through the guard, shown by a :class:`FieldDisplay`. A signal whose
    controller is down takes no commands (:class:`ControllerDownError`, nothing queued)
    and reads as local to the planners; when it answers again it is taken over anew
    from what it shows (:meth:`mark_up`)."""

    display: FieldDisplay

    def __init__(
        self,
        display: FieldDisplay,
        plans: Mapping[str, GuardPlan],
        *,
        foes: Mapping[str, Foes],
        clock: LiveClock,
        initial: Mapping[str, tuple[Interval, int, float]],
        down: Sequence[str] = (),
    ) -> None:
        self.down: set[str] = set(down)
        display.bind(self)
        super().__init__(
            display,
            plans,
            start_s=clock.now_s(),
            foes=foes,
            clock=clock.now_s,
            initial=initial,
            align_offsets=True,
            takeover="running",
        )
        for tls in self.down:
            self.next_s[self.index[tls]] = math.inf

    def is_local(self, tls_id: str) -> bool:
        return tls_id in self.down or super().is_local(tls_id)

    def status(self, tls_id: str) -> SignalStatus:
        st = super().status(tls_id)
        return replace(st, local=True) if tls_id in self.down else st

    def _commandable(self, tls_id: str, what: str) -> Any:
        if tls_id in self.down:
            raise ControllerDownError(
                f"Signal {tls_id}: its controller does not answer; {what} refused (nothing is "
                "queued; it runs its own plan until it answers again)."
            )
        return super()._commandable(tls_id, what)

    def apply_timing(self, tls_id: str, *, green_s: Sequence[float]) -> list[float]:
        out = super().apply_timing(tls_id, green_s=green_s)
        self.display.set_timing(tls_id, out)
        return out

    def _touched(self, tls_id: str) -> None:
        super()._touched(tls_id)
        self.display.sync_target(tls_id)

    def mark_down(self, tls_id: str) -> None:
        self.down.add(tls_id)
        self.next_s[self.index[tls_id]] = math.inf
        self.guard(tls_id)._log(self._now(), "controller_down")

    def mark_up(self, tls_id: str, *, interval: Interval, stage: int) -> None:
        """Take the signal over again: it shows ``interval`` of ``stage`` now (time in it
        unknown: counted from now, so nothing is cut)."""
        self.down.discard(tls_id)
        self.retake(tls_id, interval=interval, stage=stage, elapsed_s=0.0)


# --------------------------------------------------------------------------- links
Ack = Callable[[str, list[tuple[str, float]], float], None]
"""``on_ack(tls, causes, ack_wall)``: a write caused by these reports was acknowledged."""


class ControllerLink:
    """One controller: the writer of the guard's control, the heartbeat, the read-back,
    and down/up detection."""

    def __init__(
        self,
        tls: str,
        *,
        cfg: FieldConfig,
        display: FieldDisplay,
        clock: LiveClock,
        audit: AuditLog,
        on_ack: Ack,
        on_lost: Callable[[str, str], None],
    ) -> None:
        entry = cfg.signals[tls]
        self.tls = tls
        self.cfg = cfg
        self.display = display
        self.clock = clock
        self.audit = audit
        self.on_ack = on_ack
        self.on_lost = on_lost
        self.link = SnmpLink(
            tls,
            host=entry.host,
            port=entry.port,
            community=cfg.community_of(tls),
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
        )
        self.state: LinkState = "connecting"
        self.reason = ""
        self.failures = 0
        self.mismatches = 0
        self.sent_version = -1
        self.next_heartbeat_wall = 0.0
        self.wake = asyncio.Event()
        self.port: FieldPort | None = None
        self.writes = 0
        self.write_errors = 0
        self.latencies_s: list[float] = []
        self.down_since_wall: float | None = None
        self.verified = False
        self.heartbeats = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def sig(self) -> _Signal:
        return self.display.signals[self.tls]

    def _hb_wall_s(self) -> float:
        return self.cfg.heartbeat_s / self.clock.speed

    # ------------------------------------------------------------------ take-over
    async def check(self) -> bool:
        """Read the controller before taking it over: every mapped phase exists and its
        intervals are the plan's. False when it does not answer, or is refused (``state``
        ``refused``, with the reasons: it is never commanded)."""
        sig = self.sig
        plan = sig.plan
        oids: list[ntcip.Oid] = []
        for ph in sig.stage_phases:
            for p in ph:
                oids += [
                    ntcip.phase_timing_oid(n, p)
                    for n in ("phaseMinimumGreen", "phaseYellowChange", "phaseRedClear")
                ]
        try:
            values = await self.link.get(oids)
        except ControllerError as exc:
            log.warning("controller %s: no answer at the take-over check: %s", self.tls, exc.detail)
            return False
        problems = []
        k = 0
        for stage, ph in enumerate(sig.stage_phases):
            for p in ph:
                min_g, yellow, red = values[k : k + 3]
                k += 3
                if min_g is None or yellow is None or red is None:
                    problems.append(
                        f"stage {stage} is mapped to phase {p}, which the controller does not have"
                    )
                    continue
                want_min = math.ceil(plan.min_green_s[stage] - 1e-9)
                if min_g != want_min:
                    problems.append(f"phase {p}: minimum green {min_g} s, the plan's {want_min} s")
                if yellow != round(plan.yellow_s * 10) or red != round(plan.all_red_s * 10):
                    problems.append(
                        f"phase {p}: yellow {yellow / 10:g} s / red clear {red / 10:g} s, the "
                        f"plan's {plan.yellow_s:g} s / {plan.all_red_s:g} s"
                    )
        if problems:
            self._set_state("refused", "; ".join(problems[:4]))
            return False
        self.verified = True
        return True

    async def read_status(self) -> tuple[Interval, int | None] | None:
        sig = self.sig
        oids = [ntcip.status_oid(kind, g) for g in sig.groups for kind in ("greens", "yellows")]
        try:
            values = await self.link.get(oids)
        except ControllerError as exc:
            self._note_failure(exc)
            return None
        greens = {g: values[2 * i] or 0 for i, g in enumerate(sig.groups)}
        yellows = {g: values[2 * i + 1] or 0 for i, g in enumerate(sig.groups)}
        for k, ph in enumerate(sig.stage_phases):
            if any(greens[ntcip.group_bit(p)[0]] >> ntcip.group_bit(p)[1] & 1 for p in ph):
                return "green", k
        for k, ph in enumerate(sig.stage_phases):
            if any(yellows[ntcip.group_bit(p)[0]] >> ntcip.group_bit(p)[1] & 1 for p in ph):
                return "yellow", k
        return "all_red", None

    def _takeover_limit_wall_s(self) -> float:
        return 1.5 * self.sig.plan.cycle_s / self.clock.speed + TAKEOVER_WAIT_S

    async def wait_for_onset(self) -> int | None:
        """The stage whose green the controller starts next, read as it starts (within
        ``ONSET_POLL_S``): a take-over at a green's onset knows how long the green has
        run, so the guard neither cuts its minimum nor holds it past its maximum.
        ``None`` if the controller stops answering or starts no green in time."""
        end = time.monotonic() + self._takeover_limit_wall_s()
        seen_other = False
        while time.monotonic() < end:
            got = await self.read_status()
            if got is None:
                if self.state == "down" or self.failures >= self.cfg.down_after:
                    return None
            elif got[0] == "green" and got[1] is not None:
                if seen_other:
                    return got[1]
            else:
                seen_other = True
            in_green = got is not None and got[0] == "green"
            await asyncio.sleep(GREEN_POLL_S if in_green else ONSET_POLL_S)
        return None

    def _set_state(self, state: LinkState, reason: str) -> None:
        if state == self.state and reason == self.reason:
            return
        old = self.state
        self.state, self.reason = state, reason
        level = logging.INFO if state in ("up", "released") else logging.WARNING
        log.log(level, "controller %s: %s -> %s (%s)", self.tls, old, state, reason)
        self.audit.append("controller_state", tls=self.tls, state=state, was=old, reason=reason)

    # ------------------------------------------------------------------ running
    def start(self, port: FieldPort) -> None:
        self.port = port
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"field {self.tls}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        self.link.close()

    def poke(self) -> None:
        self.wake.set()

    async def run(self) -> None:
        while True:
            if self.state in ("refused", "released"):
                return
            if self.state == "connecting":
                await self._probe(first=True)
                continue
            if self.state == "down":
                await asyncio.sleep(self.cfg.probe_s / self.clock.speed)
                await self._probe()
                continue
            sig = self.sig
            now_wall = time.time()
            wait = self.next_heartbeat_wall - now_wall
            if sig.release_at_s is not None:
                wait = min(wait, self.clock.delay_s(sig.release_at_s))
            if sig.version == self.sent_version and wait > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
            if sig.release_at_s is not None and self.clock.now_s() >= sig.release_at_s:
                await self._release()
                continue
            heartbeat = time.time() >= self.next_heartbeat_wall
            if sig.version != self.sent_version or heartbeat:
                ok = await self.write(heartbeat=heartbeat and sig.version == self.sent_version)
                if ok and heartbeat:
                    self.heartbeats += 1
                    if self.heartbeats % READ_BACK_EVERY == 0:
                        await self._read_back()

    async def write(self, *, heartbeat: bool = False) -> bool:
        """Send the whole control state and ``unitBackupTime``; True when acknowledged."""
        sig = self.sig
        version, ctl = sig.version, sig.desired
        causes = self.display.take_causes(self.tls)
        pairs = [
            *ctl.pairs(sig.groups),
            *sig.timing_pairs(),
            (ntcip.UNIT_BACKUP_TIME, self.cfg.backup_time_s),
        ]
        t0 = time.time()
        self.next_heartbeat_wall = t0 + self._hb_wall_s()
        cause_ids = [c for c, _t in causes]
        self.audit.append(
            "command",
            tls=self.tls,
            control=ctl.as_dict(),
            max_green_s=None if sig.max_green_s is None else list(sig.max_green_s),
            heartbeat=heartbeat,
            backup_time_s=self.cfg.backup_time_s,
            causes=cause_ids,
        )
        try:
            await self.link.set(pairs)
        except ControllerError as exc:
            self.write_errors += 1
            self.audit.append(
                "answer",
                tls=self.tls,
                ok=False,
                error=exc.kind,
                detail=exc.detail,
                latency_ms=round((time.time() - t0) * 1e3, 3),
            )
            self._note_failure(exc)
            return False
        ack = time.time()
        self.writes += 1
        self.failures = 0
        self.latencies_s.append(ack - t0)
        if version == sig.version:
            self.sent_version = version
        self.audit.append("answer", tls=self.tls, ok=True, latency_ms=round((ack - t0) * 1e3, 3))
        if causes:
            self.on_ack(self.tls, causes, ack)
        return True

    def _note_failure(self, exc: ControllerError) -> None:
        self.failures += 1
        log.warning("controller %s: %s (%d in a row)", self.tls, exc, self.failures)
        if self.failures >= self.cfg.down_after and self.state == "up":
            self._go_down(f"{self.failures} requests failed: {exc.kind}")

    def _go_down(self, reason: str) -> None:
        self.mismatches = 0
        self._set_state("down", reason)
        self.down_since_wall = time.time()
        self.on_lost(self.tls, "controller_down")
        if self.port is not None:
            self.port.mark_down(self.tls)

    async def _probe(self, *, first: bool = False) -> None:
        """Take the controller over in the green it shows (at the moment it is read:
        nothing is cut); a controller that does not answer is (still) down."""
        if not self.verified and not await self.check():
            if self.state != "refused" and first:
                self._set_state("down", "no answer at the take-over")
            return
        got = await self.read_status()
        if got is None:
            if first:
                self._set_state("down", "no answer at the take-over")
            return
        self.failures = 0
        stage = await self.wait_for_onset()
        if stage is None or self.port is None:
            if first and self.state == "connecting":
                self._set_state("down", "no green onset seen at the take-over")
            return
        self.sent_version = -1
        self.mismatches = 0
        how = "taken over at a green's onset" if first else "taken over again at a green's onset"
        self._set_state("up", how)
        self.port.mark_up(self.tls, interval="green", stage=stage)
        self.poke()

    def _judgeable(self) -> bool:
        """Whether the guard's state can be compared with the controller's now: not
        right after or right before a change of the guard's (the command is on its way),
        nor for a signal down or handed back."""
        shown, port = self.sig.shown, self.port
        if shown is None or port is None:
            return False
        if time.time() - shown.since_wall < MISMATCH_GRACE_S:
            return False
        if self.tls in port.down or port.is_local(self.tls):
            return False
        due_in_s = port.guard(self.tls).next_change_s() - self.clock.now_s()
        return due_in_s >= MISMATCH_GRACE_S * self.clock.speed

    async def _read_back(self) -> None:
        """Compare what the controller shows with what the guard shows; if they keep
        disagreeing (the controller restarted, or ran on its own), take it over again."""
        if not self._judgeable():
            return
        got = await self.read_status()
        shown = self.sig.shown
        if got is None or shown is None or not self._judgeable():
            return
        interval, stage = got
        same = interval == shown.interval and (stage is None or stage == shown.stage)
        if same:
            self.mismatches = 0
            return
        self.mismatches += 1
        self.audit.append(
            "field_mismatch",
            tls=self.tls,
            guard=[shown.interval, shown.stage],
            controller=[interval, stage],
            count=self.mismatches,
        )
        if self.mismatches < MISMATCHES_TO_RETAKE:
            return
        log.warning(
            "controller %s shows %s %s, the guard %s %s: taken over again",
            self.tls,
            interval,
            stage,
            shown.interval,
            shown.stage,
        )
        self._go_down(
            f"out of step: it shows {interval} {stage}, the guard {shown.interval} {shown.stage}; "
            "taken over again at its next green"
        )

    async def _release(self) -> None:
        """End of a hand-back: nothing held any more; the controller runs its own plan."""
        sig = self.sig
        sig.desired, sig.release_at_s = NOTHING, None
        sig.version += 1
        if await self.write():
            sig.released = True
            self._set_state("released", "handed back to its own plan")


# --------------------------------------------------------------------------- the field
class Field:
    """Every controller of ``FIELD.toml``: connect, check, take over, run, hand back.

    Parameters
    ----------
    cfg
        The field configuration.
    plans, foes
        The guard plan and conflict matrix of every signal in ``cfg``.
    clock
        The live clock.
    audit
        The audit log.
    on_ack
        Told when a write caused by a report was acknowledged.
    on_lost
        Told when a signal left the center's control (down, mismatch): the center lets
        go of its priority there.
    """

    def __init__(
        self,
        cfg: FieldConfig,
        plans: Mapping[str, GuardPlan],
        foes: Mapping[str, Foes],
        *,
        clock: LiveClock,
        audit: AuditLog,
        on_ack: Ack | None = None,
        on_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.audit = audit
        self.plans = {t: plans[t] for t in cfg.signals}
        self.foes = {t: foes[t] for t in cfg.signals}
        self.display = FieldDisplay(
            self.plans, {t: s.stage_phases() for t, s in cfg.signals.items()}, clock=clock
        )
        self.display.on_change = self._poke
        self.links = {
            t: ControllerLink(
                t,
                cfg=cfg,
                display=self.display,
                clock=clock,
                audit=audit,
                on_ack=on_ack or (lambda *_: None),
                on_lost=on_lost or (lambda *_: None),
            )
            for t in cfg.signals
        }
        self.port: FieldPort | None = None

    def _poke(self, tls: str) -> None:
        link = self.links.get(tls)
        if link is not None:
            link.poke()

    async def connect(self) -> FieldPort:
        """Check every controller, then let each link take its controller over at the
        next green onset it shows (returns at once: :meth:`wait_taken_over`).

        A controller whose phases or intervals do not fit FIELD.toml and the plan is
        refused (never commanded); every other one starts as *down* in the port and is
        taken over by its link at the moment it is read in a green (one that does not
        answer stays down and is asked again every ``probe_s``)."""
        for link in self.links.values():
            await link.link.open()
        await asyncio.gather(*(link.check() for link in self.links.values()))
        refused = {t: link.reason for t, link in self.links.items() if link.state == "refused"}
        for t, why in refused.items():
            log.error("controller %s refused, not commanded: %s", t, why)
        taken = [t for t in self.plans if t not in refused]
        if not taken:
            raise ControllerError("*", "timeout", "every controller of FIELD.toml was refused")
        # placeholders until each link reads its controller in a green (never shown: down)
        self.port = FieldPort(
            self.display,
            {t: self.plans[t] for t in taken},
            foes={t: self.foes[t] for t in taken},
            clock=self.clock,
            initial=dict.fromkeys(taken, ("green", 0, 0.0)),
            down=taken,
        )
        for t in taken:
            self.links[t].state = "connecting"
            self.links[t].start(self.port)
        self.audit.append("takeover", signals=len(taken), refused=refused)
        return self.port

    async def wait_taken_over(self) -> None:
        """Until every controller is up or down (a take-over waits for a green's onset:
        up to one and a half cycles); the port runs meanwhile."""
        links = [link for link in self.links.values() if link.state == "connecting"]
        if not links:
            return
        wait = max(link._takeover_limit_wall_s() for link in links) + 1.0
        end = time.monotonic() + wait
        while time.monotonic() < end and any(link.state == "connecting" for link in links):
            await asyncio.sleep(0.05)
        down = sorted(link.tls for link in self.links.values() if link.state != "up")
        self.audit.append("taken_over", up=len(self.links) - len(down), not_up=down)

    def states(self) -> dict[str, dict[str, Any]]:
        return {
            t: {
                "state": link.state,
                "reason": link.reason,
                "writes": link.writes,
                "write_errors": link.write_errors,
            }
            for t, link in self.links.items()
        }

    async def close(self, *, hand_back: bool = True, wait_wall_s: float = 130.0) -> None:
        """Hand every signal back to its own plan (never cutting an interval), then stop.
        Without ``hand_back`` the links just stop (a crash): the controllers' backup
        timers do the rest."""
        port = self.port
        if hand_back and port is not None:
            for tls in port.ids:
                if tls not in port.down and not port.is_local(tls):
                    port.local_mode(tls, "actuated")  # in the green it shows: no steering
            end = time.monotonic() + wait_wall_s
            while time.monotonic() < end:
                busy = [
                    t
                    for t in port.ids
                    if t not in port.down
                    and self.links[t].state not in ("released", "down", "refused")
                ]
                if not busy:
                    break
                port.advance(self.clock.now_s())
                await asyncio.sleep(0.02)
        for link in self.links.values():
            await link.stop()
