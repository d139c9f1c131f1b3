"""De-identification of what leaves the door for roles that see no personal data.

Rules (docs/API.md, "De-identification"):

- **No raw vehicle ids.** A vehicle id becomes a keyed hash: HMAC-SHA256 keyed with the
  server secret and the tenant's salt, over a fresh random nonce per export and the id.
  Within one export a vehicle keeps one pseudonym; two exports cannot be joined on it.
- **No EV traces.** Rows about emergency vehicles or emergency calls are dropped (the
  fire service's view keeps them: they are its own vehicles), and per-vehicle exports
  keep background traffic only (vehicle types ``car`` and ``truck``).
- **Trajectories** (if a run ever exports them: a series named ``trajectories``) lose
  300 m at both ends of every vehicle's path and are snapped to the edge (no position
  on it) and to whole seconds.
- **Small cells suppressed.** A count of vehicles between 1 and k-1 (k = 5) is blanked
  (NaN), and so is every figure computed over that cell (a mean speed over 3 cars).
  A zero describes nobody and is kept.
- **Fail closed.** A series with no rule here is not handed out de-identified at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from twin.app.api.policy import ExportView

K_MIN = 5
"""Cells describing fewer vehicles than this are suppressed."""
TRIM_M = 300.0
"""Metres cut from both ends of every trajectory."""
BACKGROUND_VTYPES = frozenset({"car", "truck"})
EV_COLUMNS = ("ev", "call_edge", "hospital", "route_edges")
VEHICLE_COLUMNS = ("vehicle", "vehicle_id", "veh_id")


@dataclass
class Pseudonyms:
    """Keyed hashes of vehicle ids for one export (see the module docstring)."""

    secret: bytes
    salt: str
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        self._key = hmac.new(self.secret, self.salt.encode(), hashlib.sha256).digest()

    def __call__(self, vehicle_id: object) -> str:
        if vehicle_id is None or (isinstance(vehicle_id, float) and np.isnan(vehicle_id)):
            return ""
        digest = hmac.new(self._key, f"{self.nonce}:{vehicle_id}".encode(), hashlib.sha256)
        return "v_" + digest.hexdigest()[:16]


@dataclass(frozen=True)
class CountRule:
    """Count columns to suppress below k, and columns computed over each count."""

    counts: tuple[str, ...]
    derived: Mapping[str, str] = field(default_factory=dict)  # column -> its count column


def suppress_small(frame: pd.DataFrame, rule: CountRule, *, k: int = K_MIN) -> pd.DataFrame:
    """Blank counts of 1..k-1 vehicles and the figures computed over them."""
    out = frame.copy()
    for column in rule.counts:
        if column not in out:
            continue
        values = pd.to_numeric(out[column], errors="coerce").astype(float)
        small = (values > 0) & (values < k)
        out[column] = values.mask(small)
    for column, base in rule.derived.items():
        if column in out and base in frame:
            count = pd.to_numeric(frame[base], errors="coerce").astype(float)
            few = (count > 0) & (count < k)
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float).mask(few)
    return out


def drop_ev_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Without the rows about emergency vehicles or calls, and their columns."""
    about_ev = pd.Series(False, index=frame.index)
    for column in EV_COLUMNS:
        if column in frame:
            about_ev |= frame[column].notna() & (frame[column].astype(str) != "")
    if "kind" in frame:
        kind = frame["kind"].astype(str)
        about_ev |= kind.str.startswith(("ev_", "dispatch"))
    out = frame.loc[~about_ev].drop(columns=[c for c in EV_COLUMNS if c in frame])
    return out.dropna(axis=1, how="all").reset_index(drop=True)


def hash_vehicles(frame: pd.DataFrame, pseudonyms: Pseudonyms) -> pd.DataFrame:
    out = frame.copy()
    for column in VEHICLE_COLUMNS:
        if column in out:
            out[column] = out[column].map(pseudonyms)
    return out


def deidentify_trajectories(
    frame: pd.DataFrame, pseudonyms: Pseudonyms, *, trim_m: float = TRIM_M
) -> pd.DataFrame:
    """Trajectories (``vehicle, t_s, edge`` and ``distance_m`` driven so far, or
    ``x_m, y_m``) cut ``trim_m`` at both ends, snapped to edge and whole seconds, with
    pseudonyms; background vehicles only when a ``vtype`` column says which."""
    if frame.empty:
        return pd.DataFrame(columns=["vehicle", "t_s", "edge"])
    data = frame.sort_values(["vehicle", "t_s"]).copy()
    if "vtype" in data:
        data = data[data["vtype"].isin(BACKGROUND_VTYPES)]
    if "distance_m" not in data:
        dx = data.groupby("vehicle")["x_m"].diff().fillna(0.0)
        dy = data.groupby("vehicle")["y_m"].diff().fillna(0.0)
        data["distance_m"] = np.hypot(dx, dy).groupby(data["vehicle"]).cumsum()
    start = data.groupby("vehicle")["distance_m"].transform("min")
    end = data.groupby("vehicle")["distance_m"].transform("max")
    keep = (data["distance_m"] >= start + trim_m) & (data["distance_m"] <= end - trim_m)
    data = data.loc[keep]
    out = pd.DataFrame({
        "vehicle": data["vehicle"].map(pseudonyms),
        "t_s": np.floor(data["t_s"].astype(float)),
        "edge": data["edge"].astype(str),
    })  # fmt: skip
    return out.drop_duplicates().reset_index(drop=True)


def deidentify_trips(frame: pd.DataFrame, pseudonyms: Pseudonyms) -> pd.DataFrame:
    """Per-vehicle trips: background vehicles only, pseudonyms, no places, whole seconds."""
    data = frame[frame["vtype"].isin(BACKGROUND_VTYPES)] if "vtype" in frame else frame
    out = pd.DataFrame({"vehicle": data["vehicle"].map(pseudonyms)})
    for column in ("depart_s", "arrival_s", "duration_s", "time_loss_s", "waiting_s"):
        if column in data:
            out[column] = np.round(data[column].astype(float))
    for column in ("route_length_m", "stops", "vtype"):
        if column in data:
            out[column] = data[column].to_numpy()
    return out.reset_index(drop=True)


Rule = Callable[[pd.DataFrame, Pseudonyms, ExportView], pd.DataFrame]


def _as_is(frame: pd.DataFrame, _p: Pseudonyms, _v: ExportView) -> pd.DataFrame:
    return frame


def _counts(rule: CountRule, *, raw_for: ExportView | None = None) -> Rule:
    def apply(frame: pd.DataFrame, _p: Pseudonyms, view: ExportView) -> pd.DataFrame:
        return frame if view == raw_for else suppress_small(frame, rule)

    return apply


def _events(frame: pd.DataFrame, pseudonyms: Pseudonyms, view: ExportView) -> pd.DataFrame:
    kept = frame if view == "deidentified+ev" else drop_ev_rows(frame)
    return hash_vehicles(kept, pseudonyms)


RULES: dict[str, Rule] = {
    # no vehicles in them: signal states, timings, sign messages
    "greens_served": _as_is,
    "signal_timings": _as_is,
    "vms": _as_is,
    # counts of vehicles per cell
    "network": _counts(
        CountRule(
            counts=("vehicles_running", "vehicles_arrived", "vehicles_halting"),
            derived={"mean_speed_mps": "vehicles_running", "mean_waiting_s": "vehicles_running"},
        )
    ),
    "queues": _counts(
        CountRule(counts=("queue_veh",), derived={"stopped_delay_est_veh_s": "queue_veh"})
    ),
    "incident": _counts(
        CountRule(counts=("queue_veh", "passed_veh")), raw_for="deidentified+incidents"
    ),
    "evacuation": _counts(
        CountRule(
            counts=("departed_veh", "left_zone_veh", "arrived_veh", "sheltered_veh"),
            derived={"evacuated_share": "left_zone_veh", "sheltered_share": "sheltered_veh"},
        )
    ),
    "shelter_occupancy": _counts(CountRule(counts=("occupancy_veh",))),
    # rows about vehicles
    "events": _events,
    "trips": lambda f, p, _v: deidentify_trips(f, p),
    "trajectories": lambda f, p, _v: deidentify_trajectories(f, p),
}
"""Series name -> its de-identification; a series not here is withheld."""


def available(name: str, view: ExportView) -> bool:
    return view == "raw" or name in RULES


def deidentify(
    name: str, frame: pd.DataFrame, view: ExportView, pseudonyms: Pseudonyms
) -> pd.DataFrame:
    """The series as ``view`` may see it (``raw``: unchanged)."""
    if view == "raw":
        return frame
    rule = RULES.get(name)
    if rule is None:
        raise KeyError(name)
    return rule(frame, pseudonyms, view)
