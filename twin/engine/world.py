"""The world a scenario acts on: the calls scenarios and controllers make to SUMO.

:class:`~twin.engine.sumo_session.SumoSession` implements it over libsumo and traci
alike (the display part, :class:`signal_control.interfaces.SignalDisplay`, is what a
controller port shows signal states on); ``tests/integration/test_world_contract.py``
runs one contract suite over both.
A scenario or controller types its session as :class:`World`, never as the concrete
session, so it cannot reach SUMO other than through these calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from signal_control.interfaces import SignalDisplay
from twin.engine.state import TwinState


class NextSignal(NamedTuple):
    """The next signal on a vehicle's way, as SUMO sees it now."""

    tls: str
    link_index: int
    distance_m: float  # from the vehicle's front to the stop line
    state: str  # the link's state now: one of SUMO's r y G g s (u o O)


class Approaching(NamedTuple):
    """A vehicle on its way to the end of a lane (a stop line), as SUMO sees it now."""

    vehicle_id: str
    lane_id: str
    distance_m: float  # from the vehicle's front to the end of the lane
    speed_mps: float


class World(SignalDisplay, Protocol):
    """SUMO as scenarios see it (all times in simulation seconds)."""

    @property
    def time_s(self) -> float: ...

    @property
    def state(self) -> TwinState: ...

    # signals and queues
    def read_lane_halting(self, lane_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    def read_edge_halting(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    def read_loop_counts(self, det_ids: Sequence[str]) -> list[int]: ...

    def read_loop_gap(self, det_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    def edge_travel_times(self, edge_ids: Sequence[str]) -> dict[str, float]: ...

    def read_edge_speeds(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    # tracked vehicles (subscriptions, read into the state arrays)
    def track(self, vehicle_ids: Sequence[str]) -> None: ...

    def read_tracked(self) -> None: ...

    # vehicles
    def add_vehicle(
        self, vehicle_id: str, route_edges: Sequence[str], *, type_id: str, depart_s: float
    ) -> None: ...

    def add_stop(
        self, vehicle_id: str, edge_id: str, *, pos_m: float, duration_s: float
    ) -> None: ...

    def set_route(self, vehicle_id: str, route_edges: Sequence[str]) -> None: ...

    def vehicle_present(self, vehicle_id: str) -> bool: ...

    def vehicle_ids(self) -> list[str]: ...

    def edge_vehicle_ids(self, edge_id: str) -> list[str]: ...

    def lane_position_m(self, vehicle_id: str) -> float: ...

    def vehicle_route(self, vehicle_id: str) -> tuple[list[str], int]: ...

    def vehicles_on_route(self, vehicle_ids: Sequence[str]) -> list[tuple[str, int]]: ...

    def reroute(self, vehicle_id: str) -> list[str]: ...

    def change_target(self, vehicle_id: str, edge_id: str) -> bool: ...

    def avoid_edges(
        self, vehicle_id: str, edge_ids: Sequence[str], *, penalty_s: float
    ) -> None: ...

    def lane_index(self, vehicle_id: str) -> int: ...

    def keep_lane(self, vehicle_id: str, lane_index: int, *, duration_s: float) -> None: ...

    def remove_vehicle(self, vehicle_id: str) -> None: ...

    def next_signal(self, vehicle_id: str) -> NextSignal | None: ...

    def approaching(self, lane_ids: Sequence[str], *, within_m: float) -> list[Approaching]: ...

    def cap_speed(self, vehicle_id: str, speed_mps: float | None) -> None: ...

    # network edits
    def close_lanes(self, lane_ids: Sequence[str]) -> None: ...

    def reopen_lanes(self, lane_ids: Sequence[str]) -> None: ...

    def set_lane_allowed(self, lane_ids: Sequence[str], classes: Sequence[str]) -> None: ...

    def set_lane_max_speed(self, lane_ids: Sequence[str], speed_mps: float) -> None: ...

    def set_edge_max_speed(self, edge_id: str, speed_mps: float) -> None: ...
