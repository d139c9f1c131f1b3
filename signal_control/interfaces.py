"""What signal control needs of the things around it, as protocols.

``signal_control`` is a leaf: it imports neither the city model nor the engine. The
city's records (:class:`city_models.manifest.SignalSpec`, ``PhaseSpec``,
``DetectorSpec``, :class:`city_models.net.LinkInfo`), the scenario's ``ControlSpec``
and the engine's session and state arrays satisfy these protocols structurally, so
mypy checks every boundary without an import going the wrong way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt


class PhaseLike(Protocol):
    """One phase of a signal plan (green, yellow or all-red)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def duration_s(self) -> float: ...

    @property
    def min_green_s(self) -> float: ...

    @property
    def ped_min_green_s(self) -> float: ...

    @property
    def max_green_s(self) -> float: ...


class SignalLike(Protocol):
    """A signal: its id, plan (phases), offset and signalized incoming lanes."""

    @property
    def id(self) -> str: ...

    @property
    def offset_s(self) -> float: ...

    @property
    def phases(self) -> Sequence[PhaseLike]: ...

    @property
    def incoming_lanes(self) -> Sequence[str]: ...


class LinkLike(Protocol):
    """One controlled link of a signal (a lane-to-lane connection)."""

    @property
    def index(self) -> int: ...

    @property
    def from_lane(self) -> str: ...

    @property
    def to_edge(self) -> str: ...

    @property
    def direction(self) -> str: ...


class DetectorLike(Protocol):
    """An induction loop: ``stopline`` or ``upstream``, on one lane."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def lane(self) -> str: ...


class AdaptiveSettings(Protocol):
    """The adaptive controller's parameters (the scenario's ``control.adaptive``)."""

    @property
    def update_s(self) -> float: ...

    @property
    def window_s(self) -> float: ...

    @property
    def c_min_s(self) -> float: ...

    @property
    def c_max_s(self) -> float: ...

    @property
    def y_max(self) -> float: ...

    @property
    def smoothing(self) -> float: ...

    @property
    def max_step_s(self) -> float: ...

    @property
    def startup_loss_s(self) -> float: ...

    @property
    def clearance_loss_s(self) -> float: ...

    @property
    def actuation(self) -> str:
        """``none`` (greens run as planned) or ``gap_out`` (a planned green is a maximum
        that ends early when its loops see no vehicle for ``gap_s``)."""
        ...

    @property
    def gap_s(self) -> float: ...

    @property
    def gap_loops(self) -> str:
        """Where gap-out measures: ``advance`` (loops upstream, as SUMO's actuated places
        them) or ``stopline``."""
        ...

    @property
    def detector_gap_s(self) -> float: ...

    @property
    def green_headroom(self) -> float: ...

    @property
    def skip_empty(self) -> bool: ...

    @property
    def coordination(self) -> str:
        """``none`` (each signal on its own cycle) or ``arterial`` (one cycle, offsets,
        the main street's green ending at its yield point)."""
        ...

    @property
    def progression_kph(self) -> float: ...


class ControlSettings(Protocol):
    """The scenario's ``[control]`` as the controllers read it."""

    @property
    def guard_fixed(self) -> bool: ...

    @property
    def adaptive(self) -> AdaptiveSettings: ...

    @property
    def pressure_hysteresis_veh(self) -> float: ...


class SignalDisplay(Protocol):
    """What shows the signals: SUMO, or field controllers."""

    def set_signal_state(self, tls_id: str, state: str) -> None: ...

    def set_program(self, tls_id: str, program_id: str) -> None: ...

    def set_phase(self, tls_id: str, phase_index: int, *, remaining_s: float) -> None:
        """Put the signal's active program in phase ``phase_index`` for ``remaining_s``
        more seconds; the program runs on from there with its own phases."""
        ...


class ControlWorld(SignalDisplay, Protocol):
    """The display plus the clock and the queue readings the controllers use."""

    @property
    def time_s(self) -> float: ...

    def read_lane_halting(self, lane_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    def read_edge_halting(self, edge_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None: ...

    def read_loop_gap(self, det_ids: Sequence[str], out: npt.NDArray[np.float64]) -> None:
        """Seconds since each induction loop last saw a vehicle (0 while one is on it;
        NaN when not known) into ``out``."""
        ...


class DetectorReadings(Protocol):
    """The loops' last aggregation interval (the twin's state arrays)."""

    @property
    def det_interval_end_s(self) -> float: ...

    @property
    def det_count_veh(self) -> npt.NDArray[np.float64]: ...

    @property
    def det_index(self) -> Mapping[str, int]: ...
