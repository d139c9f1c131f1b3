"""Variable message signs: the messages the center can show and when a sign may change.

The center runs the *sign logic*: for each sign it works out the message it wants
(:func:`desired_message` in :mod:`scenarios.vms_diversion`, from the incidents it knows,
the measured travel times and approaching emergency vehicles), and :func:`may_change`
decides whether the sign may switch now:

- a message of higher priority replaces a lower one at once (an incident warning
  replaces a travel-time message; an emergency-vehicle message replaces anything);
- the emergency-vehicle message ends as soon as the vehicle has passed;
- otherwise a message stays up at least ``min_display_s`` (no flicker: drivers must be
  able to read it and trust it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessageKind = Literal["blank", "travel_time", "incident_warning", "incident_detour", "ev_clear"]
MESSAGE_KINDS: tuple[MessageKind, ...] = (
    "blank",
    "travel_time",
    "incident_warning",
    "incident_detour",
    "ev_clear",
)
PRIORITY: dict[MessageKind, int] = {
    "blank": 0,
    "travel_time": 1,
    "incident_warning": 2,
    "incident_detour": 2,
    "ev_clear": 3,
}


@dataclass(frozen=True)
class Message:
    """What one sign shows. ``avoid_edges``: the streets a detour message steers off."""

    kind: MessageKind
    text: str = ""
    incident: str | None = None
    avoid_edges: tuple[str, ...] = ()


BLANK = Message("blank")


@dataclass
class SignState:
    """One sign's current message and since when it shows."""

    sign_id: str
    edge: str
    message: Message = BLANK
    since_s: float = -1e9
    episode: int = 0  # counts message changes; drivers react once per episode


def may_change(state: SignState, desired: Message, t_s: float, *, min_display_s: float) -> bool:
    """May the sign switch from its message to ``desired`` at ``t_s``? (module doc)."""
    current = state.message
    if desired == current:
        return False
    if desired.kind == "ev_clear" or current.kind == "ev_clear":
        return True
    if PRIORITY[desired.kind] > PRIORITY[current.kind]:
        return True
    return t_s - state.since_s >= min_display_s


def show(state: SignState, message: Message, t_s: float) -> None:
    """Switch the sign (the caller checked :func:`may_change`)."""
    if message.kind != state.message.kind or message.incident != state.message.incident:
        state.episode += 1  # a new message: drivers passing now read it afresh
    state.message = message
    state.since_s = t_s


def detour_text(street: str, detour_street: str, lanes_closed: int, full: bool) -> str:
    what = "closed" if full else f"{lanes_closed} lane(s) closed"
    return f"Crash ahead on {street}: {what}. Detour via {detour_street}."


def warning_text(street: str, lanes_closed: int, full: bool, delay_min: float) -> str:
    what = "closed" if full else f"{lanes_closed} lane(s) closed"
    return f"Crash ahead on {street}: {what}. Expect {delay_min:.0f} min delay."


def travel_time_text(landmark: str, minutes: float) -> str:
    return f"To {landmark}: {minutes:.0f} min"


def ev_text(kind: str) -> str:
    what = "Fire truck" if kind == "fire_truck" else "Ambulance"
    return f"{what} approaching: keep the left lane clear."
