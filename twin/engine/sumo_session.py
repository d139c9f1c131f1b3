"""The SUMO session: the only code that imports libsumo or traci.

A :class:`SumoSession` starts one simulation (libsumo by default, in this process;
traci over a socket when asked, e.g. for ``sumo-gui``), advances it in slices
(``run(until_s)``), and refreshes the :class:`~twin.engine.state.TwinState` arrays by the
cheapest path measured here (``../shared/BASELINES.md``): SUMO aggregates the
induction loops itself (``period`` in the detector file) and the twin reads each
aggregate once per interval through direct getters; no per-step Python work unless a
step hook asks for it. Tracked vehicles (a few EVs) use subscriptions.

libsumo allows one simulation per process, so a run owns its process
(the executors, :mod:`twin.engine.executors`, start one per run).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from twin.engine.state import IntArray, TwinState
from twin.engine.sumo_tools import diagnose, iter_xml_elements, sumo_binary
from twin.engine.world import Approaching, NextSignal
from twin.errors import SumoError

log = logging.getLogger(__name__)

Backend = Literal["libsumo", "traci"]
StepHook = Callable[["SumoSession"], None]


MAX_APPROACH_M = 400.0
"""An approach is followed upstream (through pocket and lane-drop nodes) to this length."""


def upstream_chains(
    net: Path, edge_ids: Sequence[str], *, max_length_m: float = MAX_APPROACH_M
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Per signal approach edge, the edges upstream of it that belong to the same
    approach, nearest first: an edge ``u`` joins when it is the only edge feeding the
    approach there and it leads nowhere else (a turn pocket split off the street, a lane
    added mid-block), until the approach is ``max_length_m`` long. The queue and delay of
    the approach are then measured from the stop line back to the last intersection.

    Returns the chains and the lanes of every edge in them.
    """
    feeders: dict[str, set[str]] = {}
    exits: dict[str, set[str]] = {}
    length: dict[str, float] = {}
    lanes: dict[str, list[str]] = {}
    try:
        for c in iter_xml_elements(net, "connection"):
            src, dst = c["from"], c["to"]
            if src.startswith(":") or dst.startswith(":"):
                continue
            feeders.setdefault(dst, set()).add(src)
            exits.setdefault(src, set()).add(dst)
        for lane in iter_xml_elements(net, "lane"):
            edge = lane["id"].rsplit("_", 1)[0]  # SUMO names a lane <edge>_<index>
            if not edge.startswith(":"):
                length[edge] = max(length.get(edge, 0.0), float(lane.get("length", 0.0)))
                lanes.setdefault(edge, []).append(lane["id"])
    except SumoError as exc:  # SUMO itself will say what is wrong with the net, in its words
        log.warning("approach chains not read (%s); each approach is its own edge", exc)
        return dict.fromkeys(edge_ids, ()), {}
    out: dict[str, tuple[str, ...]] = {}
    for edge in edge_ids:
        chain: list[str] = []
        total, head = length.get(edge, 0.0), edge
        while total < max_length_m:
            up = feeders.get(head, set())
            if len(up) != 1:
                break
            (u,) = up
            if exits.get(u) != {head} or u == edge or u in chain:
                break
            chain.append(u)
            total += length.get(u, 0.0)
            head = u
        out[edge] = tuple(chain)
    used = {u for chain in out.values() for u in chain}
    return out, {u: tuple(lanes.get(u, ())) for u in sorted(used)}


MESO_ARGS = (
    "--mesosim", "true", "--meso-junction-control", "true", "--meso-minor-penalty", "8",
    "--routing-algorithm", "astar",
)  # fmt: skip
"""SUMO's mesoscopic model for forecasts. Junction control: vehicles wait at red signals
and yield at priority junctions, so signal timings matter as in the micro model. A minor
link (a permissive left turn, a side street) costs 8 s more: without it meso's delays
were 24 % below micro's on the same fork, with it 12 % (travel time per OD 9.7 % -> 5.6 %;
chosen on a district fork, checked at suwon-scale: ``experiments.forecast``). A* finds
the same shortest routes as Dijkstra (ties aside) in a third of the time; routing the
trips that depart in the window is most of a meso forecast's cost."""
STATE_ARGS = ("--save-state.rng", "true", "--save-state.precision", "17")
"""A saved state that a run continues from exactly: the random number generators, and
every position and speed at full precision (SUMO's default of 2 decimals makes the
continued run drift from the first step on)."""


_MesoMap = tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.float64]]
"""A lane list's distinct edges, each lane's edge index, and 1 / its edge's lanes."""


class _Libsumo:
    """libsumo's one-simulation-per-process slot."""

    active = False


@dataclass(frozen=True)
class SessionConfig:
    """SUMO's inputs and outputs for one run; :meth:`args` is the command line that both
    the twin and a plain ``sumo`` call use (the overhead benchmark relies on it)."""

    net: Path
    routes: tuple[Path, ...]
    additional: tuple[Path, ...]
    begin_s: float
    end_s: float
    seed: int
    step_length_s: float = 1.0
    teleport_s: float = 300.0
    tripinfo: Path | None = None
    summary: Path | None = None
    statistics: Path | None = None
    error_log: Path | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # SUMO's mesoscopic model (queues per edge segment) instead of the microscopic one
    mesosim: bool = False
    # states written during the run keep the random number generators and full precision
    # (a fork from them reproduces the run), and the run starts from ``load_state``
    state_io: bool = False
    load_state: Path | None = None

    def args(self) -> list[str]:
        out = [
            "--net-file", str(self.net),
            "--route-files", ",".join(map(str, self.routes)),
            "--begin", f"{self.begin_s:g}", "--end", f"{self.end_s:g}",
            "--step-length", f"{self.step_length_s:g}",
            "--seed", str(self.seed),
            "--time-to-teleport", f"{self.teleport_s:g}",
            "--ignore-route-errors", "true",
            "--no-step-log", "true", "--no-warnings", "true",
            "--duration-log.disable", "true",
        ]  # fmt: skip
        if self.additional:
            out += ["--additional-files", ",".join(map(str, self.additional))]
        if self.tripinfo:
            # unfinished trips too: a controller that jams the network must not look
            # better because its slowest vehicles never arrive
            out += ["--tripinfo-output", str(self.tripinfo),
                    "--tripinfo-output.write-unfinished", "true"]  # fmt: skip
        if self.summary:
            out += ["--summary-output", str(self.summary)]
        if self.statistics:
            out += ["--statistic-output", str(self.statistics)]
        if self.error_log:
            out += ["--error-log", str(self.error_log)]
        if self.mesosim:
            out += list(MESO_ARGS)
        if self.state_io or self.load_state is not None:
            out += list(STATE_ARGS)
        if self.load_state is not None:
            out += ["--load-state", str(self.load_state)]
        return out + list(self.extra_args)


class SumoSession:
    """One running simulation and the twin's arrays over it.

    Parameters
    ----------
    config
        Inputs and outputs.
    tls_ids, det_ids
        Signals and induction loops whose values fill the state arrays.
    lane_ids, lane_tls
        Incoming lanes of the signals, grouped by signal (CSR offsets).
    detector_period_s
        SUMO's aggregation period of the loops (the city's ``detector_period_s``).
    backend
        ``libsumo`` (fast, in-process, one per process) or ``traci`` (socket).
    gui
        Start ``sumo-gui`` (needs ``backend="traci"``).
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        tls_ids: Sequence[str] = (),
        det_ids: Sequence[str] = (),
        lane_ids: Sequence[str] = (),
        lane_tls: IntArray | None = None,
        detector_period_s: float = 0.0,
        backend: Backend = "libsumo",
        gui: bool = False,
    ) -> None:
        if backend not in ("libsumo", "traci"):
            raise SumoError(f"Unknown SUMO backend {backend!r}; allowed: libsumo, traci.")
        if gui and backend != "traci":
            raise SumoError("sumo-gui runs only with backend='traci' (libsumo has no GUI).")
        self.config = config
        self.backend: Backend = backend
        self.gui = gui
        offsets = lane_tls if lane_tls is not None else np.zeros(len(tls_ids) + 1, np.int64)
        self.state = TwinState(tuple(tls_ids), tuple(det_ids), tuple(lane_ids), offsets)
        self._sumo: Any = None
        self._vehicle_vars: tuple[int, ...] = ()
        self._subscribed: set[str] = set()
        self._lane_disallowed: dict[str, tuple[str, ...]] = {}
        self._free_max_speed: dict[str, float] = {}
        self._lane_length: dict[str, float] = {}
        self.detector_period_s = detector_period_s
        # what the twin changed that SUMO's saved state does not keep (see edits())
        self._shown: dict[str, str] = {}  # signal -> state last set through TraCI
        self._lane_perm: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._speed_limits: dict[tuple[str, str], float] = {}  # ("edge"|"lane", id)
        self._adapted: dict[tuple[str, str], float] = {}  # (vehicle, edge) -> believed s
        self._kept_lane: dict[str, tuple[int, float]] = {}  # vehicle -> (lane, until_s)
        self._on_loops: dict[str, set[str]] = {}  # loop -> vehicles on it at a loaded state
        self._edge_lanes: dict[str, int] = {}  # lanes per edge (meso reads edges)
        self._meso_maps: dict[int, tuple[Sequence[str], _MesoMap]] = {}
        self._told_meso_loops = False
        self.command_log: list[dict[str, Any]] = []
        """Every network or driver command the twin gave (time, command, arguments):
        lane closures and permissions, speed limits, beliefs and lane keeping; signal
        states are kept as the last one per signal (:meth:`edits`)."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start SUMO; a :class:`SumoError` carries SUMO's own error message."""
        module = self._module()
        if self.backend == "libsumo" and _Libsumo.active:
            raise SumoError(
                "A libsumo simulation is already running in this process; libsumo allows "
                "one per process (run each simulation in its own process: twin.engine.executors)."
            )
        binary = sumo_binary("sumo-gui" if self.gui else "sumo")
        cmd = [str(binary), *self.config.args()]
        try:
            module.start(cmd)
        except Exception as exc:  # libsumo raises its own exception types
            raise SumoError(self._explain("SUMO could not start", exc)) from exc
        if self.backend == "libsumo":
            _Libsumo.active = True
        self._sumo = module
        self.state.t_s = float(module.simulation.getTime())
        tc = module.constants
        self._vehicle_vars = (
            tc.VAR_POSITION,
            tc.VAR_SPEED,
            tc.VAR_ROAD_ID,
            tc.VAR_LANEPOSITION,
            tc.VAR_DISTANCE,
        )
        log.info("SUMO started (%s), t=%.1f s", self.backend, self.state.t_s)

    def close(self) -> None:
        if self._sumo is None:
            return
        try:
            self._sumo.close()
        except Exception as exc:  # closing a dead SUMO is not worth a second error
            log.debug("closing SUMO: %s", exc)
        finally:
            if self.backend == "libsumo":
                _Libsumo.active = False
            self._sumo = None

    def __enter__(self) -> SumoSession:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _module(self) -> Any:
        if self.backend == "libsumo":
            import libsumo

            return libsumo
        import traci

        return traci

    @property
    def sumo(self) -> Any:
        if self._sumo is None:
            raise SumoError("The SUMO session is not started (call start() first).")
        return self._sumo

    def _explain(self, what: str, exc: BaseException) -> str:
        detail = str(exc).strip()
        log_path = self.config.error_log
        lines: list[str] = []
        if log_path is not None and log_path.exists():
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            detail = "\n".join(lines[-8:])
        elif not self.state.t_s:  # failed while loading: let a plain sumo say why
            detail = f"{detail}; {diagnose(self.config.args())}"
        return f"{what}: {detail or type(exc).__name__}"

    # ------------------------------------------------------------------ time
    @property
    def time_s(self) -> float:
        return self.state.t_s

    def run(self, until_s: float, *, step_hook: StepHook | None = None) -> None:
        """Advance to ``until_s``; with a hook, step by step calling it after each step,
        else in one call (SUMO steps internally, no Python per step)."""
        sumo = self.sumo
        try:
            if step_hook is None:
                sumo.simulationStep(until_s)
                self.state.t_s = float(sumo.simulation.getTime())
            else:
                while self.state.t_s + 1e-9 < until_s:
                    sumo.simulationStep()
                    self.state.t_s = float(sumo.simulation.getTime())
                    step_hook(self)
        except SumoError:
            raise
        except Exception as exc:
            raise SumoError(self._explain(f"SUMO failed at t={self.state.t_s:.0f} s", exc)) from exc

    # ------------------------------------------------------------------ reads
    def read_signals(self) -> None:
        get = self.sumo.trafficlight.getPhase
        phase = self.state.tls_phase
        for k, tls in enumerate(self.state.tls_ids):
            phase[k] = get(tls)

    def read_detectors(self) -> bool:
        """Read every loop's last aggregation interval; ``False`` if it was already read."""
        period = self.detector_period_s
        end = math.floor(self.state.t_s / period + 1e-9) * period if period else self.state.t_s
        if end <= self.state.det_interval_end_s or not self.state.det_ids:
            return False
        if self.config.mesosim:  # SUMO's meso loops give no interval values over TraCI
            if not self._told_meso_loops:
                log.info("mesoscopic model: the loops' interval counts are not available")
                self._told_meso_loops = True
            return False
        il = self.sumo.inductionloop
        count, occ, speed = (
            self.state.det_count_veh,
            self.state.det_occupancy_pct,
            self.state.det_speed_mps,
        )
        for k, det in enumerate(self.state.det_ids):
            count[k] = il.getLastIntervalVehicleNumber(det)
            occ[k] = il.getLastIntervalOccupancy(det)
            speed[k] = il.getLastIntervalMeanSpeed(det)
        speed[speed < 0] = np.nan  # SUMO's -1: no vehicle in the interval
        if self._on_loops:
            self._count_loaded_on_loops(count)
        self.state.det_interval_end_s = end
        return True

    def _count_loaded_on_loops(self, count: npt.NDArray[np.float64]) -> None:
        """After a state was loaded, SUMO's loops do not know the vehicles that stood on
        them (a loop's counts are not in SUMO's state), so they never count them; the run
        that saved the state did, in the interval they left in. Count each of them here
        in the interval it left the loop in."""
        il = self.sumo.inductionloop
        index = self.state.det_index
        for det, waiting in list(self._on_loops.items()):
            left = waiting - set(il.getLastStepVehicleIDs(det))
            if left:
                count[index[det]] += len(left)
                waiting -= left
            if not waiting:
                del self._on_loops[det]

    def read_queues(self) -> None:
        """Halting vehicles on every signalized incoming lane, into the state arrays."""
        self.read_lane_halting(self.state.lane_ids, self.state.lane_halting_veh)

    def read_lane_queues(self) -> None:
        """Halting vehicles and the mean vehicle length on every signalized incoming lane,
        into the state arrays (two direct getters per lane: what the run reads every
        control tick for the queues per approach)."""
        st = self.state
        self.read_lanes(st.lane_ids, st.lane_halting_veh, st.lane_veh_length_m)

    def read_lanes(
        self,
        lane_ids: Sequence[str],
        halting_veh: npt.NDArray[np.float64],
        veh_length_m: npt.NDArray[np.float64],
    ) -> None:
        """Halting vehicles and mean vehicle length (0 when empty) of each lane, last step."""
        if self.config.mesosim:
            self._read_meso_lanes(lane_ids, halting_veh, veh_length_m)
            return
        lane = self.sumo.lane
        halting, length = lane.getLastStepHaltingNumber, lane.getLastStepLength
        for k, lane_id in enumerate(lane_ids):
            halting_veh[k] = halting(lane_id)
            veh_length_m[k] = length(lane_id)

    def _read_meso_lanes(
        self,
        lane_ids: Sequence[str],
        halting_veh: npt.NDArray[np.float64],
        veh_length_m: npt.NDArray[np.float64] | None,
    ) -> None:
        """The mesoscopic model keeps vehicles in queues per edge segment, not on lanes
        (SUMO's lane getters read 0 there): each lane gets its edge's halting vehicles
        shared evenly over the edge's lanes, and the edge's mean vehicle length."""
        edges, index, share = self._meso_lane_map(lane_ids)
        edge = self.sumo.edge
        halting, length = edge.getLastStepHaltingNumber, edge.getLastStepLength
        per_edge = np.fromiter((halting(e) for e in edges), np.float64, len(edges))
        halting_veh[:] = per_edge[index] * share
        if veh_length_m is not None:
            lengths = np.fromiter((length(e) for e in edges), np.float64, len(edges))
            veh_length_m[:] = lengths[index]

    def _meso_lane_map(self, lane_ids: Sequence[str]) -> _MesoMap:
        """For a list of lanes (kept by identity: the run reads the same lists every
        tick): the distinct edges, each lane's edge index and 1 / the edge's lanes."""
        key = id(lane_ids)
        cached = self._meso_maps.get(key)
        if cached is not None and cached[0] is lane_ids:
            return cached[1]
        edge = self.sumo.edge
        edges: list[str] = []
        where: dict[str, int] = {}
        index = np.empty(len(lane_ids), np.int64)
        share = np.empty(len(lane_ids), np.float64)
        for k, lane_id in enumerate(lane_ids):
            e = lane_id.rsplit("_", 1)[0]  # SUMO names a lane <edge>_<index>
            if e not in where:
                where[e] = len(edges)
                edges.append(e)
                if e not in self._edge_lanes:
                    self._edge_lanes[e] = max(int(edge.getLaneNumber(e)), 1)
            index[k] = where[e]
            share[k] = 1.0 / self._edge_lanes[e]
        value = (edges, index, share)
        self._meso_maps[key] = (lane_ids, value)
        return value

    def track(self, vehicle_ids: Sequence[str]) -> None:
        """Follow these vehicles through subscriptions (position, speed, edge)."""
        self.state.set_tracked(vehicle_ids)
        self._subscribed = set()

    def read_tracked(self) -> None:
        """Refresh tracked vehicles; a vehicle not (or no longer) in the network reads NaN."""
        vehicle = self.sumo.vehicle
        present = set(self.sumo.vehicle.getIDList()) if self.state.tracked_ids else set()
        st = self.state
        for k, vid in enumerate(st.tracked_ids):
            if vid not in present:  # distance keeps its last value (the trip's total)
                st.tracked_x_m[k] = st.tracked_y_m[k] = st.tracked_speed_mps[k] = np.nan
                st.tracked_lane_pos_m[k] = np.nan
                st.tracked_edge[k] = ""
                continue
            if vid not in self._subscribed:
                vehicle.subscribe(vid, self._vehicle_vars)
                self._subscribed.add(vid)
                res = {v: g(vid) for v, g in zip(self._vehicle_vars, self._getters(), strict=True)}
            else:
                res = vehicle.getSubscriptionResults(vid)
            pos, spd, edge, lpos, dist = (res[v] for v in self._vehicle_vars)
            st.tracked_x_m[k], st.tracked_y_m[k] = pos
            st.tracked_speed_mps[k] = spd
            st.tracked_edge[k] = edge
            st.tracked_lane_pos_m[k] = lpos
            st.tracked_distance_m[k] = dist

    def _getters(self) -> tuple[Callable[[str], Any], ...]:
        v = self.sumo.vehicle
        return (v.getPosition, v.getSpeed, v.getRoadID, v.getLanePosition, v.getDistance)

    def counts(self) -> dict[str, int]:
        """Vehicles loaded / departed / arrived so far and running now."""
        sim = self.sumo.simulation
        return {
            "running": int(self.sumo.vehicle.getIDCount()),
            "expected": int(sim.getMinExpectedNumber()),
        }

    # ------------------------------------------------------------------ signals
    def set_signal_state(self, tls_id: str, state: str) -> None:
        """Show ``state`` at ``tls_id`` from the next step on (the guard decides it)."""
        self.sumo.trafficlight.setRedYellowGreenState(tls_id, state)
        self._shown[tls_id] = state

    def set_program(self, tls_id: str, program_id: str) -> None:
        """Switch ``tls_id`` to one of its loaded programs (e.g. ``"actuated"``)."""
        try:
            self.sumo.trafficlight.setProgram(tls_id, program_id)
        except Exception as exc:
            raise SumoError(f"Signal {tls_id} has no program {program_id!r}: {exc}") from exc
        self._shown.pop(tls_id, None)  # a loaded program: SUMO's state keeps it

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        """Put ``tls_id``'s active program in phase ``phase_index`` for ``remaining_s`` more
        seconds (shown from this step on); the program then runs on with its own phases.
        A hand-back uses it right after :meth:`set_program`, so the local program resumes
        in the phase the guard shows instead of at its own schedule position."""
        tl = self.sumo.trafficlight
        try:
            tl.setPhase(tls_id, int(phase_index))
            tl.setPhaseDuration(tls_id, float(remaining_s))
        except Exception as exc:
            raise SumoError(
                f"Signal {tls_id}: cannot show phase {phase_index} of program "
                f"{tl.getProgram(tls_id)!r} for {remaining_s:g} s: {exc}"
            ) from exc

    def read_lane_halting(self, lane_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        """Halting vehicles on each lane (last step) into ``out``."""
        if self.config.mesosim:
            self._read_meso_lanes(lane_ids, out, None)
            return
        get = self.sumo.lane.getLastStepHaltingNumber
        for k, lane in enumerate(lane_ids):
            out[k] = get(lane)

    def read_edge_halting(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        """Halting vehicles on each edge (all lanes, last step) into ``out``."""
        get = self.sumo.edge.getLastStepHaltingNumber
        for k, edge in enumerate(edge_ids):
            out[k] = get(edge)

    # ------------------------------------------------------------------ vehicles
    def add_vehicle(
        self, vehicle_id: str, route_edges: Sequence[str], *, type_id: str, depart_s: float
    ) -> None:
        """Insert a vehicle on a given route (e.g. a dispatched emergency vehicle)."""
        sumo = self.sumo
        route_id = f"route_{vehicle_id}"
        try:
            sumo.route.add(route_id, list(route_edges))
            sumo.vehicle.add(vehicle_id, route_id, typeID=type_id, depart=f"{depart_s:g}",
                             departLane="best", departSpeed="max")  # fmt: skip
        except Exception as exc:
            raise SumoError(f"SUMO refused vehicle {vehicle_id!r}: {exc}") from exc

    def next_signal(self, vehicle_id: str) -> NextSignal | None:
        """The next signal on the vehicle's way (SUMO's ``getNextTLS``): the signal, the
        link the vehicle will use, the distance to its stop line and the link's state
        now; ``None`` when no signal is ahead."""
        ahead = self.sumo.vehicle.getNextTLS(vehicle_id)
        if not ahead:
            return None
        tls, index, distance, state = ahead[0]
        return NextSignal(str(tls), int(index), float(distance), str(state))

    def approaching(self, lane_ids: Sequence[str], *, within_m: float) -> list[Approaching]:
        """The vehicles on these lanes within ``within_m`` of the lane's end (its stop
        line at a junction), with that distance and their speed."""
        lane, vehicle = self.sumo.lane, self.sumo.vehicle
        out = []
        for lane_id in lane_ids:
            length = self._lane_length.get(lane_id)
            if length is None:
                length = self._lane_length[lane_id] = float(lane.getLength(lane_id))
            for vid in lane.getLastStepVehicleIDs(lane_id):
                distance = length - float(vehicle.getLanePosition(vid))
                if distance <= within_m:
                    out.append(Approaching(vid, lane_id, distance, float(vehicle.getSpeed(vid))))
        return out

    def cap_speed(self, vehicle_id: str, speed_mps: float | None) -> None:
        """Cap the vehicle's speed at ``speed_mps`` (its own maximum: SUMO slows it down
        within its deceleration), or lift the cap (``None``: the maximum it had before
        the first cap; nothing to do for a vehicle that has left)."""
        vehicle = self.sumo.vehicle
        if speed_mps is None:
            free = self._free_max_speed.pop(vehicle_id, None)
            if free is not None and vehicle_id in vehicle.getIDList():
                vehicle.setMaxSpeed(vehicle_id, free)
            return
        self._free_max_speed.setdefault(vehicle_id, float(vehicle.getMaxSpeed(vehicle_id)))
        vehicle.setMaxSpeed(vehicle_id, float(speed_mps))  # SUMO's state keeps it

    def set_route(self, vehicle_id: str, route_edges: Sequence[str]) -> None:
        """Replace the vehicle's remaining route (it must start with its current edge)."""
        self.sumo.vehicle.setRoute(vehicle_id, list(route_edges))

    def add_stop(self, vehicle_id: str, edge_id: str, *, pos_m: float, duration_s: float) -> None:
        self.sumo.vehicle.setStop(vehicle_id, edge_id, pos=pos_m, duration=duration_s)

    def edge_travel_times(self, edge_ids: Sequence[str]) -> dict[str, float]:
        """SUMO's current travel-time estimate per edge (from current speeds)."""
        get = self.sumo.edge.getTraveltime
        return {e: float(get(e)) for e in edge_ids}

    def read_edge_speeds(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        """Each edge's mean speed in the last step [m/s] into ``out`` (SUMO reports an
        empty edge's speed limit): the samples of the center's travel-time estimate
        (:class:`twin.center.travel_times.EdgeTravelTimes`)."""
        get = self.sumo.edge.getLastStepMeanSpeed
        for k, edge in enumerate(edge_ids):
            out[k] = get(edge)

    def vehicle_present(self, vehicle_id: str) -> bool:
        return vehicle_id in self.sumo.vehicle.getIDList()

    def vehicle_ids(self) -> list[str]:
        """Every vehicle in the network now."""
        return list(self.sumo.vehicle.getIDList())

    def edge_vehicle_ids(self, edge_id: str) -> list[str]:
        """Vehicles on ``edge_id`` in the last step."""
        return list(self.sumo.edge.getLastStepVehicleIDs(edge_id))

    def lane_position_m(self, vehicle_id: str) -> float:
        return float(self.sumo.vehicle.getLanePosition(vehicle_id))

    def vehicle_route(self, vehicle_id: str) -> tuple[list[str], int]:
        """The vehicle's route and the index of the edge it is on."""
        v = self.sumo.vehicle
        return list(v.getRoute(vehicle_id)), int(v.getRouteIndex(vehicle_id))

    def vehicles_on_route(self, vehicle_ids: Sequence[str]) -> list[tuple[str, int]]:
        """For each vehicle (in the network): the edge it is on (``:...`` inside a
        junction) and its route index."""
        v = self.sumo.vehicle
        return [(str(v.getRoadID(vid)), int(v.getRouteIndex(vid))) for vid in vehicle_ids]

    def reroute(self, vehicle_id: str) -> list[str]:
        """SUMO's own rerouting on *current* travel times (closed edges are avoided);
        returns the remaining route. When no route exists SUMO keeps the old one."""
        v = self.sumo.vehicle
        try:
            v.rerouteTraveltime(vehicle_id, True)
        except Exception as exc:
            log.warning("rerouting %s failed: %s", vehicle_id, exc)
        route, index = list(v.getRoute(vehicle_id)), int(v.getRouteIndex(vehicle_id))
        return route[max(index, 0) :]

    def change_target(self, vehicle_id: str, edge_id: str) -> bool:
        """New destination edge, routed by SUMO on current travel times; ``False`` when
        SUMO finds no route (the vehicle keeps its old one)."""
        try:
            self.sumo.vehicle.changeTarget(vehicle_id, edge_id)
        except Exception as exc:
            log.info("vehicle %s cannot reach %s: %s", vehicle_id, edge_id, exc)
            return False
        return True

    def avoid_edges(self, vehicle_id: str, edge_ids: Sequence[str], *, penalty_s: float) -> None:
        """The driver believes these streets take ``penalty_s`` (e.g. a sign said "closed
        ahead, detour"); SUMO's rerouting then weighs them so for this vehicle only."""
        v = self.sumo.vehicle
        for edge_id in edge_ids:
            v.setAdaptedTraveltime(vehicle_id, edge_id, float(penalty_s))
            self._adapted[(vehicle_id, edge_id)] = float(penalty_s)
        self._log("avoid_edges", vehicle_id, list(edge_ids), float(penalty_s))

    def read_loop_counts(self, det_ids: Sequence[str]) -> list[int]:
        """Vehicles counted by each induction loop in its last aggregation interval."""
        get = self.sumo.inductionloop.getLastIntervalVehicleNumber
        return [int(get(d)) for d in det_ids]

    def read_loop_gap(self, det_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        """Seconds since each induction loop last saw a vehicle (0 while one is on it),
        at the last step, into ``out`` (vehicle actuation's gap)."""
        get = self.sumo.inductionloop.getTimeSinceDetection
        for k, det in enumerate(det_ids):
            out[k] = get(det)

    def lane_index(self, vehicle_id: str) -> int:
        """Index of the lane the vehicle drives in (0 = the kerb lane)."""
        return int(self.sumo.vehicle.getLaneIndex(vehicle_id))

    def keep_lane(self, vehicle_id: str, lane_index: int, *, duration_s: float) -> None:
        """Ask the driver to move to / stay in ``lane_index`` for ``duration_s`` (SUMO
        changes lanes when it safely can)."""
        self.sumo.vehicle.changeLane(vehicle_id, int(lane_index), float(duration_s))
        self._kept_lane[vehicle_id] = (int(lane_index), self.state.t_s + float(duration_s))
        self._log("keep_lane", vehicle_id, int(lane_index), float(duration_s))

    def remove_vehicle(self, vehicle_id: str) -> None:
        """Take the vehicle out of the network (a tracked one reads NaN from now on)."""
        if vehicle_id in self._subscribed:  # SUMO fails the next step on a stale one
            self.sumo.vehicle.unsubscribe(vehicle_id)
            self._subscribed.discard(vehicle_id)
        self.sumo.vehicle.remove(vehicle_id)

    # ------------------------------------------------------------------ network edits
    def close_lanes(self, lane_ids: Sequence[str]) -> None:
        """Close lanes to every vehicle class (an incident, a closed access). Vehicles
        plan around them; routing avoids an edge whose lanes are all closed."""
        lane = self.sumo.lane
        for lane_id in lane_ids:
            if lane_id not in self._lane_disallowed:
                self._lane_disallowed[lane_id] = tuple(lane.getDisallowed(lane_id))
            lane.setDisallowed(lane_id, ["all"])
            self._lane_perm[lane_id] = ("disallowed", ("all",))
        self._log("close_lanes", list(lane_ids))

    def reopen_lanes(self, lane_ids: Sequence[str]) -> None:
        """Give closed lanes back the permissions they had before :meth:`close_lanes`."""
        lane = self.sumo.lane
        for lane_id in lane_ids:
            before = self._lane_disallowed.pop(lane_id, None)
            if before is not None:
                lane.setDisallowed(lane_id, list(before))
                self._lane_perm[lane_id] = ("disallowed", before)
        self._log("reopen_lanes", list(lane_ids))

    def set_lane_allowed(self, lane_ids: Sequence[str], classes: Sequence[str]) -> None:
        """Only these vehicle classes may use the lanes (e.g. ``["emergency"]``)."""
        lane = self.sumo.lane
        for lane_id in lane_ids:
            if lane_id not in self._lane_disallowed:
                self._lane_disallowed[lane_id] = tuple(lane.getDisallowed(lane_id))
            lane.setAllowed(lane_id, list(classes))
            self._lane_perm[lane_id] = ("allowed", tuple(classes))
        self._log("set_lane_allowed", list(lane_ids), list(classes))

    def set_lane_max_speed(self, lane_ids: Sequence[str], speed_mps: float) -> None:
        """Speed limit of single lanes (e.g. the lane left open past a crash scene). The
        router's free-flow view of the edge keeps the fastest lane's limit."""
        for lane_id in lane_ids:
            self.sumo.lane.setMaxSpeed(lane_id, float(speed_mps))
            self._speed_limits.pop(("lane", lane_id), None)  # re-applied in this order
            self._speed_limits[("lane", lane_id)] = float(speed_mps)
        self._log("set_lane_max_speed", list(lane_ids), float(speed_mps))

    def set_edge_max_speed(self, edge_id: str, speed_mps: float) -> None:
        """Speed limit of every lane of the edge (a capacity drop, a flooded street)."""
        self.sumo.edge.setMaxSpeed(edge_id, float(speed_mps))
        self._speed_limits.pop(("edge", edge_id), None)
        self._speed_limits[("edge", edge_id)] = float(speed_mps)
        self._log("set_edge_max_speed", edge_id, float(speed_mps))

    # ------------------------------------------------------------------ state files
    def _log(self, command: str, *args: Any) -> None:
        self.command_log.append({"t_s": self.state.t_s, "command": command, "args": list(args)})

    def edits(self) -> dict[str, Any]:
        """What the twin changed in SUMO that SUMO's saved state does not keep, as plain
        data (JSON): signal states set through TraCI (SUMO keeps only its loaded
        programs), lane permissions and speed limits (SUMO saves no network), each
        driver's believed travel times and lane keeping, and this session's memory of
        what it changed (so a reopened lane gets its permissions back). Route changes,
        stops, added vehicles and speed caps are in SUMO's state already.
        :meth:`reapply` puts them back after a state is loaded."""
        now = self.state.t_s
        present = set(self.sumo.vehicle.getIDList())
        return {
            "t_s": now,
            "signal_states": dict(self._shown),
            "lane_permissions": {k: [kind, list(c)] for k, (kind, c) in self._lane_perm.items()},
            "lane_disallowed_before": {k: list(v) for k, v in self._lane_disallowed.items()},
            "speed_limits": [[kind, obj, v] for (kind, obj), v in self._speed_limits.items()],
            "adapted_traveltimes": [
                [vid, edge, v] for (vid, edge), v in self._adapted.items() if vid in present
            ],
            "kept_lanes": {
                vid: [lane, until]
                for vid, (lane, until) in self._kept_lane.items()
                if vid in present and until > now + 1e-9
            },
            "free_max_speed": {k: v for k, v in self._free_max_speed.items() if k in present},
        }

    def reapply(self, edits: dict[str, Any]) -> None:
        """Give SUMO back what :meth:`edits` recorded (right after a state was loaded,
        before the first step): the network's permissions and limits first, then the
        drivers', then the signal states, each shown from the next step on as in the run
        that saved them."""
        sumo, now = self.sumo, self.state.t_s
        present = set(sumo.vehicle.getIDList())
        try:
            for lane_id, (kind, classes) in edits.get("lane_permissions", {}).items():
                if kind == "allowed":
                    sumo.lane.setAllowed(lane_id, list(classes))
                else:
                    sumo.lane.setDisallowed(lane_id, list(classes))
                self._lane_perm[lane_id] = (kind, tuple(classes))
            for lane_id, before in edits.get("lane_disallowed_before", {}).items():
                self._lane_disallowed[lane_id] = tuple(before)
            for kind, obj, speed in edits.get("speed_limits", []):
                (sumo.edge if kind == "edge" else sumo.lane).setMaxSpeed(obj, float(speed))
                self._speed_limits[(kind, obj)] = float(speed)
            for vid, edge, believed in edits.get("adapted_traveltimes", []):
                if vid in present:
                    sumo.vehicle.setAdaptedTraveltime(vid, edge, float(believed))
                    self._adapted[(vid, edge)] = float(believed)
            for vid, (lane, until) in edits.get("kept_lanes", {}).items():
                if vid in present and until > now:
                    sumo.vehicle.changeLane(vid, int(lane), float(until) - now)
                    self._kept_lane[vid] = (int(lane), float(until))
            self._free_max_speed.update(edits.get("free_max_speed", {}))
            known = set(self.state.det_ids)
            self._on_loops = {
                d: set(ids) for d, ids in edits.get("on_loops", {}).items() if d in known
            }
            for tls, shown in edits.get("signal_states", {}).items():
                self.set_signal_state(tls, shown)
        except Exception as exc:
            raise SumoError(
                f"SUMO refused the twin's commands replayed at t={now:g} s: {exc}"
            ) from exc

    def snapshot(self) -> dict[str, Any]:
        """Where every vehicle and signal stands now, as plain data: what a run of the
        other traffic model starts from (:meth:`place`), since SUMO's mesoscopic model
        cannot load a microscopic state (nor the reverse). Per vehicle: its type, the
        rest of its route, lane, position, speed and departure; vehicles waiting to
        enter; per signal its program, phase and the time left in the phase."""
        sumo = self.sumo
        v, tl, now = sumo.vehicle, sumo.trafficlight, self.state.t_s
        vehicles = []
        present = set(v.getIDList())
        for vid in v.getIDList():
            route, index = list(v.getRoute(vid)), int(v.getRouteIndex(vid))
            road = str(v.getRoadID(vid))
            inside = road.startswith(":")  # inside a junction: it enters the next edge
            vehicles.append({
                "id": vid, "type": str(v.getTypeID(vid)),
                "route": route[max(index, 0) + (1 if inside else 0):],
                "lane": -1 if inside else int(v.getLaneIndex(vid)),
                "pos_m": 0.0 if inside else float(v.getLanePosition(vid)),
                "speed_mps": float(v.getSpeed(vid)), "depart_s": float(v.getDeparture(vid)),
                "time_loss_s": float(v.getTimeLoss(vid)),
            })  # fmt: skip
        pending = []
        for vid in sumo.simulation.getPendingVehicles():
            try:
                pending.append({"id": vid, "type": str(v.getTypeID(vid)),
                                "route": list(v.getRoute(vid))})  # fmt: skip
            except Exception as exc:  # SUMO may know too little of a vehicle not yet in
                log.warning("snapshot: waiting vehicle %s left out (%s)", vid, exc)
        signals = {
            t: {"program": str(tl.getProgram(t)), "phase": int(tl.getPhase(t)),
                "remaining_s": float(tl.getNextSwitch(t)) - now}
            for t in tl.getIDList()
        }  # fmt: skip
        # vehicles whose front has left the loop's lane while their back is still over
        # the loop: a loaded loop never sees them (SUMO registers the vehicles on the
        # loop's own lane only), though the saved run counts them when their back leaves
        il, lane_of = sumo.inductionloop, v.getLaneID
        loops: dict[str, list[str]] = {}
        for d in () if self.config.mesosim else self.state.det_ids:
            on = il.getLastStepVehicleIDs(d)
            if not on:
                continue
            lane, at_m = il.getLaneID(d), float(il.getPosition(d))
            end_m = float(sumo.lane.getLength(lane))
            hanging = []
            for vid in on:
                if vid not in present or lane_of(vid) == lane:
                    continue
                behind_m = float(v.getLength(vid)) - float(v.getLanePosition(vid))
                if behind_m > 0 and end_m - behind_m < at_m:  # its back is before the loop
                    hanging.append(vid)
            if hanging:
                loops[d] = hanging
        return {"t_s": now, "vehicles": vehicles, "pending": pending, "signals": signals,
                "on_loops": loops}  # fmt: skip

    def place(self, snapshot: dict[str, Any]) -> dict[str, int]:
        """Put a :meth:`snapshot` into this simulation (started at the snapshot's time,
        without the vehicles that departed before it): every vehicle enters where it was,
        on the rest of its route, at its speed; the waiting ones wait again; every signal
        running a loaded program gets its phase and the time left. Returns how many
        vehicles were placed and how many SUMO refused (logged)."""
        sumo = self.sumo
        placed = refused = 0
        for veh in [*snapshot.get("vehicles", []), *snapshot.get("pending", [])]:
            vid, edges = str(veh["id"]), [str(e) for e in veh["route"]]
            if not edges:
                continue
            lane = int(veh.get("lane", -1))
            where = {
                "departLane": str(lane) if lane >= 0 else "best",
                "departPos": f"{max(float(veh.get('pos_m', 0.0)), 0.0):.2f}",
                "departSpeed": f"{max(float(veh.get('speed_mps', 0.0)), 0.0):.2f}",
            } if "pos_m" in veh else {"departLane": "best", "departSpeed": "max"}  # fmt: skip
            try:
                sumo.route.add(f"fork!{vid}", edges)
                sumo.vehicle.add(vid, f"fork!{vid}", typeID=str(veh["type"]), depart="now",
                                 **where)  # fmt: skip
                placed += 1
            except Exception as exc:
                refused += 1
                log.warning("snapshot: SUMO refused vehicle %s (%s)", vid, exc)
        tl = sumo.trafficlight
        for tls, sig in snapshot.get("signals", {}).items():
            try:
                tl.setProgram(tls, str(sig["program"]))
                tl.setPhase(tls, int(sig["phase"]))
                tl.setPhaseDuration(tls, max(float(sig["remaining_s"]), 0.0))
            except Exception as exc:  # a TraCI-shown state ("online"): the edits show it
                log.debug("snapshot: signal %s keeps its own program (%s)", tls, exc)
        return {"placed": placed, "refused": refused}

    def save_state(self, path: Path) -> Path:
        """Write SUMO's full simulation state (vehicles, signals, RNG) to ``path``."""
        self.sumo.simulation.saveState(str(path))
        return path

    def load_state(self, path: Path) -> None:
        """Restore a state written by :meth:`save_state` (same network and routes)."""
        if not path.exists():
            raise SumoError(f"State file {path} does not exist.")
        try:
            self.sumo.simulation.loadState(str(path))
        except Exception as exc:
            raise SumoError(self._explain(f"SUMO could not load state {path}", exc)) from exc
        self.state.t_s = float(self.sumo.simulation.getTime())
        self.state.det_interval_end_s = -1.0
