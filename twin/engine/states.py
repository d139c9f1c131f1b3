"""Saved states: SUMO's state file plus the twin's sidecar, for forks.

A run saves its state at given times (``Run(save_state_at_s=...)``): SUMO writes its full
state (vehicles, signals' loaded programs, random number generators, at full precision:
:data:`~twin.engine.sumo_session.STATE_ARGS`) to ``state_<t>.xml``, and the twin writes
next to it

- ``state_<t>.json``, the sidecar: the SUMO version, the simulation time and traffic
  model, the city's hash, what the composing layer puts there (``meta``: the scenario
  spec, seed, demand files), the twin's own changes that SUMO's state does not keep
  (:meth:`~twin.engine.sumo_session.SumoSession.edits`) and its command log, and a
  snapshot of every vehicle and signal (for a fork into the other traffic model);
- ``state_<t>.control.pkl``, the run's signal controllers (the guards, the adaptive
  controller's counts and timings), pickled without the SUMO session they drive.

A fork (:class:`Resume`) starts SUMO from the state file, re-applies the edits, and
either continues the saved controllers or starts new ones. :func:`read_state` refuses a
state written by another SUMO version or for another city, with a message.

The controllers' pickle is trusted input: only load states this twin wrote.
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from signal_control.guard import Interval
from signal_control.timing import TimingWorkspace
from twin.errors import ScenarioError

log = logging.getLogger(__name__)

Mode = Literal["micro", "meso"]
STATE_FORMAT = 2
"""The sidecar's format; a sidecar of another format is refused. 2: the adaptive
controller's saved state holds its per-movement split of shared lanes (issue 17)."""
_DISPLAY = "display"
_CLOCK = "clock"


def state_path(states_dir: Path, t_s: float) -> Path:
    """SUMO's state file of a run saved at ``t_s``."""
    return states_dir / f"state_{t_s:g}.xml"


def sidecar_path(state: Path) -> Path:
    return state.with_suffix(".json")


def control_path(state: Path) -> Path:
    return state.with_suffix(".control.pkl")


@dataclass(frozen=True)
class SavedState:
    """A state file and its sidecar, as read by :func:`read_state`."""

    path: Path
    t_s: float
    sumo_version: str
    mode: Mode
    city_hash: str
    meta: dict[str, Any]
    edits: dict[str, Any]
    snapshot: dict[str, Any]
    command_log: list[dict[str, Any]] = field(default_factory=list)
    has_control: bool = False
    approaches: dict[str, Any] = field(default_factory=dict)

    @property
    def control_file(self) -> Path:
        return control_path(self.path)


@dataclass(frozen=True)
class Resume:
    """How a run continues from a saved state.

    ``restore_control``: continue the saved run's controllers (the same ``[control]``);
    otherwise the run's own controllers take the signals over where they stand
    (``initial``: per guarded signal ``(interval, stage, elapsed_s)`` as the saved run's
    guards showed them; the others take over a plan running by its offsets).
    """

    state: SavedState
    restore_control: bool
    initial: Mapping[str, tuple[Interval, int, float]] | None = None


def write_sidecar(
    state: Path,
    *,
    t_s: float,
    sumo_version: str,
    mode: Mode,
    city_hash: str,
    meta: Mapping[str, Any],
    edits: Mapping[str, Any],
    snapshot: Mapping[str, Any],
    command_log: list[dict[str, Any]],
    has_control: bool,
    approaches: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state``'s sidecar (JSON) and return its path."""
    body = {
        "format": STATE_FORMAT,
        "t_s": t_s,
        "sumo_version": sumo_version,
        "mode": mode,
        "city_hash": city_hash,
        "state_file": state.name,
        "meta": dict(meta),
        "edits": dict(edits),
        "command_log": command_log,
        "has_control": has_control,
        "approaches": dict(approaches or {}),
        "snapshot": dict(snapshot),
    }
    out = sidecar_path(state)
    out.write_text(json.dumps(body, allow_nan=True), encoding="utf-8")
    return out


def read_state(
    path: Path, *, sumo_version: str, city_hash: str | None = None, field_name: str = "state"
) -> SavedState:
    """Read a saved state's sidecar, refusing what cannot be continued.

    Raises
    ------
    ScenarioError
        The state file or its sidecar is missing or unreadable, was written by another
        SUMO version (SUMO's state format and its models change between versions, so a
        fork would not continue the same simulation), or for another city.
    """
    where = f"field '{field_name}' = '{path}'"
    car = sidecar_path(path)
    if not path.is_file():
        raise ScenarioError(f"{where}: the state file does not exist.")
    try:
        raw = json.loads(car.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(
            f"{where}: its sidecar {car.name} is missing; allowed: a state a CityTwin run "
            "saved (sim.save_state_at_s), which writes both."
        ) from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{where}: its sidecar {car.name} cannot be read: {exc}.") from None
    if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise ScenarioError(
            f"{where}: sidecar format {found!r}; allowed: {STATE_FORMAT} (written by this "
            "version of CityTwin)."
        )
    written_by = str(raw.get("sumo_version", "unknown"))
    if written_by != sumo_version:
        raise ScenarioError(
            f"{where}: the state was written by SUMO {written_by}, and this is SUMO "
            f"{sumo_version}; a state from another SUMO version is refused (its format and "
            "models change between versions, so the fork would not continue the same "
            f"simulation). Run the parent again with SUMO {sumo_version}, or fork with "
            f"SUMO {written_by}."
        )
    if city_hash is not None and raw.get("city_hash") != city_hash:
        raise ScenarioError(
            f"{where}: the state is of city {str(raw.get('city_hash'))[:12]}..., and this "
            f"run's city is {city_hash[:12]}...; allowed: a state of the same city (same "
            "net, loops and plans)."
        )
    mode = raw.get("mode", "micro")
    if mode not in ("micro", "meso"):
        raise ScenarioError(f"{where}: sidecar mode {mode!r}; allowed: micro, meso.")
    return SavedState(
        path=path,
        t_s=float(raw["t_s"]),
        sumo_version=written_by,
        mode=mode,
        city_hash=str(raw.get("city_hash", "")),
        meta=dict(raw.get("meta", {})),
        edits=dict(raw.get("edits", {})),
        snapshot=dict(raw.get("snapshot", {})),
        command_log=list(raw.get("command_log", [])),
        has_control=bool(raw.get("has_control", False)),
        approaches=dict(raw.get("approaches", {})),
    )


def saved_times(states_dir: Path) -> list[float]:
    """The times a run saved states at (from the sidecars in ``states_dir``)."""
    out = []
    for car in sorted(states_dir.glob("state_*.json")):
        try:
            out.append(float(car.stem.removeprefix("state_")))
        except ValueError:
            continue
    return sorted(out)


def find_state(states_dir: Path, t_s: float) -> Path | None:
    """The state a run saved at ``t_s`` (to the second), if any."""
    for t in saved_times(states_dir):
        if math.isclose(t, t_s, abs_tol=0.5):
            return state_path(states_dir, t)
    return None


# ----------------------------------------------------------------------------- controllers
class _ControlPickler(pickle.Pickler):
    """Pickles the controllers with the SUMO session and the port's clock left out."""

    def __init__(self, buf: io.BytesIO, display: object, clock: object) -> None:
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self._display = display
        self._clock = clock

    def persistent_id(self, obj: Any) -> str | None:
        if obj is self._display:
            return _DISPLAY
        if self._clock is not None and obj is self._clock:
            return _CLOCK
        return None

    def reducer_override(self, obj: Any) -> Any:
        # a timing workspace's result arrays are views of its buffer; pickled, they would
        # be copies that the kernel never writes again: a fresh workspace instead (it
        # holds nothing between calls)
        if isinstance(obj, TimingWorkspace):
            return (TimingWorkspace, (obj.network,))
        return NotImplemented


class _ControlUnpickler(pickle.Unpickler):
    def __init__(self, buf: io.BytesIO, display: object, clock: Callable[[], float]) -> None:
        super().__init__(buf)
        self._display = display
        self._clock = clock

    def persistent_load(self, pid: Any) -> Any:
        if pid == _DISPLAY:
            return self._display
        if pid == _CLOCK:
            return self._clock
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def dump_control(control: object, *, display: object, path: Path) -> None:
    """Pickle the controllers to ``path``, without ``display`` (the session they drive)
    and their port's clock (a closure over it)."""
    port = getattr(control, "port", None)
    clock = getattr(port, "clock", None) if port is not None else None
    buf = io.BytesIO()
    _ControlPickler(buf, display, clock).dump(control)
    path.write_bytes(buf.getvalue())


def load_control(path: Path, *, display: object, clock: Callable[[], float]) -> Any:
    """The controllers pickled by :func:`dump_control`, now driving ``display``."""
    return _ControlUnpickler(io.BytesIO(path.read_bytes()), display, clock).load()
