"""A small Python client of the sandbox HTTP API (httpx), for researchers' own programs.

```python
from twin.client import TwinClient

twin = TwinClient("http://127.0.0.1:8000", key="ctk_...")
run = twin.submit_run("baseline", seed=7)              # queued -> running -> done
delay_s = twin.wait_run(run["id"])["metrics"]["mean_delay_s"]

with twin.open_session("baseline", seed=7, overrides={"sim.duration_s": 600}) as s:
    obs = s.advance(5)                                 # the world after 5 s
    s.command("hold", "n3_3", until_s=obs["t_s"] + 10)  # through the safety guard
```

Every command a session sends passes the same safety guard the twin's own controllers
use; the answer says what the guard did (``accepted``, ``guard``: clamped, deferred,
ignored) or why it refused. ``experiments/remote_max_pressure.py`` drives a whole
district with max pressure this way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx
import numpy as np
from websockets.sync.client import connect

from signal_control.max_pressure import MaxPressurePolicy, PressureCommand
from signal_control.port import SignalStatus

DONE = ("done", "failed")


class ApiError(RuntimeError):
    """The API answered with an error (the status code and its ``detail``)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def _check(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except (ValueError, AttributeError):
            detail = resp.text
        raise ApiError(resp.status_code, detail)
    if not resp.content:
        return None
    return resp.json()


def _body(
    scenario: str | Mapping[str, Any],
    seed: int | None,
    city: str | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A run or session request: the scenario and what is given of the rest."""
    body: dict[str, Any] = {"scenario": scenario if isinstance(scenario, str) else dict(scenario)}
    if seed is not None:
        body["seed"] = seed
    if city is not None:
        body["city"] = city
    if overrides:
        body["overrides"] = dict(overrides)
    return body


class TwinClient:
    """The sandbox API over HTTP.

    Parameters
    ----------
    base_url
        E.g. ``http://127.0.0.1:8000``.
    key
        An API key (``Authorization: Bearer KEY``).
    timeout_s
        Per request.
    http
        An ``httpx.Client`` to use instead (e.g. FastAPI's TestClient in tests).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        key: str,
        timeout_s: float = 600.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = http or httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TwinClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> Any:
        return _check(self.http.get(path, headers=self.headers, params=params))

    def _post(self, path: str, body: Any = None) -> Any:
        return _check(self.http.post(path, headers=self.headers, json=body))

    def _delete(self, path: str) -> Any:
        return _check(self.http.delete(path, headers=self.headers))

    # ------------------------------------------------------------------ runs
    def submit_run(
        self,
        scenario: str | Mapping[str, Any],
        *,
        seed: int | None = None,
        city: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue a run; ``{"id", "status", "queue_position"}``."""
        out: dict[str, Any] = self._post("/v1/runs", _body(scenario, seed, city, overrides))
        return out

    def run(self, run_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._get(f"/v1/runs/{run_id}")
        return out

    def wait_run(
        self, run_id: str, *, poll_s: float = 1.0, timeout_s: float = 3600.0
    ) -> dict[str, Any]:
        """Poll until the run is done or failed; its record."""
        deadline = time.monotonic() + timeout_s
        while True:
            rec = self.run(run_id)
            if rec["status"] in DONE:
                return rec
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {rec['status']} after {timeout_s:g} s")
            time.sleep(poll_s)

    def cancel_run(self, run_id: str) -> Any:
        return self._post(f"/v1/runs/{run_id}/cancel")

    # ------------------------------------------------------------------ sessions
    def open_session(
        self,
        scenario: str | Mapping[str, Any],
        *,
        seed: int | None = None,
        city: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        controlled: Sequence[str] | Literal["all"] = "all",
    ) -> Session:
        """Start an interactive session (a worker process on the server)."""
        body = _body(scenario, seed, city, overrides)
        body["controlled"] = controlled if controlled == "all" else list(controlled)
        out = self._post("/v1/sessions", body)
        return Session(self, out["id"], out["layout"])


class Session:
    """One interactive session (see :meth:`TwinClient.open_session`)."""

    def __init__(self, client: TwinClient, session_id: str, layout: dict[str, Any]) -> None:
        self.client = client
        self.id = session_id
        self.layout = layout
        self.closed = False

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        if not self.closed:
            self.close()

    def _path(self, tail: str = "") -> str:
        return f"/v1/sessions/{self.id}{tail}"

    def advance(self, seconds: float) -> dict[str, Any]:
        """Run ``seconds`` more; the observation."""
        out: dict[str, Any] = self.client._post(self._path("/advance"), {"seconds": seconds})
        return out

    def observe(self) -> dict[str, Any]:
        out: dict[str, Any] = self.client._get(self._path("/observation"))
        return out

    def command(self, verb: str, signal: str, **args: Any) -> dict[str, Any]:
        """One port command (``apply_timing``, ``hold``, ``force_off``, ``skip``,
        ``request_priority``, ``cancel_priority``); what the guard did."""
        return self.commands([{"verb": verb, "signal": signal, "args": args}])[0]

    def commands(self, batch: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Several commands in one request, carried out in order."""
        out = self.client._post(self._path("/commands"), {"commands": list(batch)})
        results: list[dict[str, Any]] = out["results"]
        return results

    def inject(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An incident, an EV dispatch or a VMS message (``{"kind": ..., ...}``)."""
        out: dict[str, Any] = self.client._post(self._path("/events"), dict(event))
        return out

    def close(self) -> dict[str, Any]:
        """Finish the run where it stands; its metrics."""
        self.closed = True
        out: dict[str, Any] = self.client._delete(self._path())
        return out

    def stream(self, *, seconds: float, every_s: float) -> Iterator[dict[str, Any]]:
        """Advance ``seconds`` over the session's WebSocket, receiving an observation
        every ``every_s`` simulated seconds as soon as it exists."""
        url = self.client.base_url.replace("http", "ws", 1) + self._path("/stream")
        with connect(f"{url}?every_s={every_s:g}", additional_headers=self.client.headers) as ws:
            ws.send(json.dumps({"advance": seconds}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("error"):
                    raise ApiError(400, msg["error"])
                if msg.get("end"):
                    return
                msg["received_wall_s"] = time.time()
                yield msg


# --------------------------------------------------------------------------- max pressure


@dataclass(frozen=True)
class _Phase:
    name: str
    kind: str
    state: str
    duration_s: float
    min_green_s: float
    ped_min_green_s: float
    max_green_s: float


@dataclass(frozen=True)
class _Signal:
    id: str
    offset_s: float
    phases: tuple[_Phase, ...]
    incoming_lanes: tuple[str, ...]


@dataclass(frozen=True)
class _Link:
    index: int
    from_lane: str
    to_edge: str
    direction: str


def policy_from_layout(
    layout: Mapping[str, Any], *, hysteresis_veh: float = 1.0
) -> MaxPressurePolicy:
    """A :class:`~signal_control.max_pressure.MaxPressurePolicy` over a session's
    controlled signals, from its layout (the same policy the twin runs in-process)."""
    signals, links = [], {}
    for s in layout["signals"]:
        phases = tuple(
            _Phase(
                p["name"],
                p["kind"],
                p["state"],
                float(p["duration_s"]),
                float(p["min_green_s"]),
                float(p["ped_min_green_s"]),
                float(p["max_green_s"]),
            )
            for p in s["phases"]
        )
        signals.append(_Signal(s["id"], float(s["offset_s"]), phases, tuple(s["incoming_lanes"])))
        links[s["id"]] = [
            _Link(int(k["index"]), k["from_lane"], k["to_edge"], k["direction"]) for k in s["links"]
        ]
    return MaxPressurePolicy(
        signals, links, {e: int(n) for e, n in layout["edge_lanes"].items()},
        hysteresis_veh=hysteresis_veh, control_interval_s=float(layout["control_interval_s"]),
    )  # fmt: skip


def status_from_observation(tls: str, obs: Mapping[str, Any], t_s: float) -> SignalStatus:
    """The port's status of one signal, as an observation reports it."""
    s = obs["signals"][tls]
    return SignalStatus(
        tls_id=tls,
        interval=s["interval"],
        stage=int(s["stage"]),
        target=int(s["target"]),
        entered_s=t_s - float(s["time_in_interval_s"]),
        next_change_s=float("inf") if s["next_change_s"] is None else float(s["next_change_s"]),
        min_end_s=float("inf") if s["min_end_s"] is None else float(s["min_end_s"]),
        priority_stage=s["priority_stage"],
        priority_until_s=float("nan"),
        local=bool(s["local"]),
        handing_back=bool(s["handing_back"]),
    )


def max_pressure_commands(
    policy: MaxPressurePolicy, obs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One tick of max pressure from an observation: the session commands to send."""
    t = float(obs["t_s"])
    lanes = np.array([obs["lane_halting_veh"][ln] for ln in policy.lanes], dtype=np.float64)
    edges = np.array([obs["edge_halting_veh"][e] for e in policy.edges], dtype=np.float64)
    decided: list[PressureCommand] = policy.decide(
        t, lane_halting_veh=lanes, edge_halting_veh=edges,
        status=lambda tls: status_from_observation(tls, obs, t),
    )  # fmt: skip
    out: list[dict[str, Any]] = []
    for c in decided:
        if c.verb == "switch":
            out.append({"verb": "skip", "signal": c.tls, "args": {"stage": c.stage}})
            out.append({"verb": "force_off", "signal": c.tls, "args": {}})
        else:
            out.append({"verb": "hold", "signal": c.tls, "args": {"until_s": c.until_s}})
    return out
