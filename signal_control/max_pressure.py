"""Max-pressure signal control as a policy: queues in, commands out.

Every control tick, each signal whose green has had its minimum compares the pressure of
its stages (sum over the stage's movements of saturation flow x (queue on the in-lane -
queue per lane on the out-edge)); if another stage has more pressure by a hysteresis
margin, the signal *switches* to it (skip + force-off through the guard), else it
*holds* its green one more tick. :class:`MaxPressurePolicy` only decides: the in-process
controller (:class:`signal_control.control.ControlManager`) and a remote client driving
an API session both build it from the same description of the signals and carry out
its commands through the guarded port, so both give the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from signal_control.interfaces import LinkLike, SignalLike
from signal_control.movements import SAT_FLOW_THROUGH_VPH, lane_sat_flow_vph, stage_lanes
from signal_control.port import SignalStatus
from signal_control.timing import PhaseMovements, TimingNetwork, max_pressure

EPS_S = 1e-9


@dataclass(frozen=True)
class PressureCommand:
    """``switch`` ``tls`` to ``stage`` (skip + force-off), or ``hold`` it ``until_s``."""

    tls: str
    verb: Literal["switch", "hold"]
    stage: int = -1
    until_s: float = 0.0


class MaxPressurePolicy:
    """Max-pressure decisions for a set of signals.

    Parameters
    ----------
    signals
        The signals to control (their plans give the stages).
    links
        Per signal id, its links.
    edge_lanes
        Lane count of every out-edge (queues are compared per lane).
    hysteresis_veh
        Switch only for more pressure than this many vehicles at through saturation flow.
    control_interval_s
        A hold lasts until the next decision.

    Attributes
    ----------
    lanes, edges
        The in-lanes and out-edges whose halting vehicles :meth:`decide` needs, in the
        order of its arrays.
    """

    def __init__(
        self,
        signals: Sequence[SignalLike],
        links: Mapping[str, Sequence[LinkLike]],
        edge_lanes: Mapping[str, int],
        *,
        hysteresis_veh: float,
        control_interval_s: float,
    ) -> None:
        if not hysteresis_veh >= 0:
            raise ValueError(f"hysteresis_veh must be >= 0 (got {hysteresis_veh})")
        if not control_interval_s > 0:
            raise ValueError(f"control_interval_s must be > 0 (got {control_interval_s})")
        self.tls_ids = [s.id for s in signals]
        self.margin = hysteresis_veh * SAT_FLOW_THROUGH_VPH
        self.control_interval_s = control_interval_s
        lanes: list[str] = []
        index: dict[str, int] = {}
        edges: list[str] = []
        edge_index: dict[str, int] = {}
        phase_ptr, lane_ptr, phase_lanes = [0], [0], []
        mov_ptr, mov_in, mov_out_edge, mov_sat = [0], [], [], []
        lost, intergreen, min_g, max_g = [], [], [], []
        for sig in signals:
            greens = [p for p in sig.phases if p.kind == "green"]
            for phase, served in zip(greens, stage_lanes(sig, links[sig.id]), strict=True):
                for lane, dirs in sorted(served.items()):
                    if lane not in index:
                        index[lane] = len(lanes)
                        lanes.append(lane)
                    phase_lanes.append(index[lane])
                    for link in links[sig.id]:
                        if link.from_lane == lane and link.direction in dirs:
                            if link.to_edge not in edge_index:
                                edge_index[link.to_edge] = len(edges)
                                edges.append(link.to_edge)
                            mov_in.append(index[lane])
                            mov_out_edge.append(edge_index[link.to_edge])
                            mov_sat.append(lane_sat_flow_vph({link.direction}, protected_left=True))
                lane_ptr.append(len(phase_lanes))
                mov_ptr.append(len(mov_in))
                lost.append(0.0)
                intergreen.append(0.0)
                min_g.append(phase.min_green_s)
                max_g.append(phase.max_green_s)
            phase_ptr.append(len(lost))
        n_in = len(lanes)
        n_all = n_in + len(edges)
        self.lanes, self.edges = lanes, edges
        self._edge_lanes = np.array([edge_lanes[e] for e in edges], np.float64)
        self._network = TimingNetwork.create(
            phase_ptr=np.array(phase_ptr, np.int64),
            phase_lane_ptr=np.array(lane_ptr, np.int64),
            phase_lanes=np.array(phase_lanes, np.int64),
            sat_flow_vph=np.full(n_all, SAT_FLOW_THROUGH_VPH),
            lost_s=np.array(lost, np.float64),
            intergreen_s=np.array(intergreen, np.float64),
            min_green_s=np.array(min_g, np.float64),
            max_green_s=np.array(max_g, np.float64),
        )
        self._movements = PhaseMovements.create(
            mov_ptr=np.array(mov_ptr, np.int64),
            mov_in_lane=np.array(mov_in, np.int64),
            mov_out_lane=n_in + np.array(mov_out_edge, np.int64),
            mov_sat_flow_vph=np.array(mov_sat, np.float64),
            n_lanes=n_all,
        )
        self._queue = np.zeros(n_all)

    def decide(
        self,
        t_s: float,
        *,
        lane_halting_veh: npt.NDArray[np.float64],
        edge_halting_veh: npt.NDArray[np.float64],
        status: Callable[[str], SignalStatus],
    ) -> list[PressureCommand]:
        """The commands for ``t_s``: one per signal whose green has had its minimum
        (signals in an intergreen, in their minimum, or handed back get none).

        ``lane_halting_veh`` and ``edge_halting_veh`` are halting vehicles on
        :attr:`lanes` and on :attr:`edges` (all lanes), in that order.
        """
        n_in = len(self.lanes)
        if lane_halting_veh.shape != (n_in,) or edge_halting_veh.shape != (len(self.edges),):
            raise ValueError(
                f"need {n_in} lane and {len(self.edges)} edge queues; got "
                f"{lane_halting_veh.shape} and {edge_halting_veh.shape}"
            )
        self._queue[:n_in] = lane_halting_veh
        self._queue[n_in:] = edge_halting_veh / self._edge_lanes
        result = max_pressure(self._network, self._movements, self._queue)
        ptr = self._network.phase_ptr
        out = []
        for i, tls in enumerate(self.tls_ids):
            st = status(tls)
            if st.local or st.handing_back:
                continue
            if st.interval != "green" or st.min_end_s > t_s + EPS_S:
                continue
            pressures = result.pressure[ptr[i] : ptr[i + 1]]
            best = int(result.best_phase[i])
            current = st.stage
            if best >= 0 and best != current and pressures[best] > pressures[current] + self.margin:
                out.append(PressureCommand(tls, "switch", stage=best))
            else:
                out.append(PressureCommand(tls, "hold", until_s=t_s + self.control_interval_s))
        return out
