"""The live web map: the city drawn from its own geometry, following a session or the
live service (issue 16).

- ``GET /map``: the page (plain HTML, CSS and a canvas drawn by our own JavaScript from
  ``/map/static/``; nothing is loaded from elsewhere, so it works offline). The key is
  given in the page (or the URL's fragment, which never reaches the server).
- ``GET /v1/cities/{city}/geojson`` (``cities:read``): edges as LineStrings, signals as
  points with their plan (stages, cycle, offset), POIs, VMS sites and zones, in lon/lat.
- ``GET /v1/sessions/{sid}/map/geojson``, ``GET .../map/frame``, WebSocket
  ``.../map/stream`` (``sessions:use``): the session's city, a full frame now, and frames
  that follow the session (a delta each time its simulated time moves, at most ``hz``
  a second).
- ``GET /v1/live/map/geojson``, WebSocket ``/v1/live/map/stream`` (``live:spat``): the
  same for the live service (signals from the guard's status, EVs on their missions).

What a frame holds depends on the role (docs/API.md, "De-identification"): signals,
queues (halting vehicles per edge) and counts for every role; individual vehicles, EV
positions and tracks only for ``operator`` (and, live, ``fire`` for its own agency's EVs).
A researcher's frames name no vehicle.

A browser's WebSocket cannot send headers: these streams take the key either as the
usual ``Authorization: Bearer KEY`` header or as the first message ``{"key": KEY}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from city_models.build import City
from city_models.geo import Projection, projection_of
from twin.app.api import quotas
from twin.app.api.catalog import BodyScenarioError, resolve_city, scenario_raw, validate_spec
from twin.app.api.deps import Principal, require, websocket_principal
from twin.app.api.errors import ConflictError, NotFoundError, responses
from twin.app.api.keys import authenticate
from twin.app.api.policy import allowed
from twin.errors import TwinError

log = logging.getLogger(__name__)

router = APIRouter(tags=["map"])

STATIC = Path(__file__).resolve().parent.parent / "static" / "map"
STATIC_FILES = {"map.js": "text/javascript", "map.css": "text/css"}
MAX_HZ = 10.0
KEY_WAIT_S = 10.0
VEHICLE_ROLES = frozenset({"operator"})
"""Roles that see individual vehicles (ids, positions) in a session's frames."""
DELTA_SECTIONS = ("signals", "queues", "vehicles", "evs", "incidents", "vms")
COORD_DIGITS = 6  # ~0.1 m

CityRead = Annotated[Principal, Depends(require("cities:read"))]
SessionUse = Annotated[Principal, Depends(require("sessions:use"))]
LiveSpat = Annotated[Principal, Depends(require("live:spat"))]


# ----------------------------------------------------------------------------- the page


@router.get("/map", include_in_schema=False)
def map_page() -> HTMLResponse:
    """The map page (no key needed to load it; every data request carries one)."""
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


@router.get("/map/static/{name}", include_in_schema=False)
def map_static(name: str) -> FileResponse:
    media = STATIC_FILES.get(name)
    if media is None:
        raise NotFoundError(f"No file {name!r}.")
    return FileResponse(STATIC / name, media_type=media)


# ----------------------------------------------------------------------------- geometry


class CityGeometry:
    """A city in lon/lat: the GeoJSON and what frames need (edge shapes, node points)."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.proj: Projection = projection_of(city.manifest)
        net = city.net
        self.edge_lonlat: dict[str, list[tuple[float, float]]] = {}
        self.edge_cum: dict[str, list[float]] = {}
        for eid, e in net.edges.items():
            pts = [self.lonlat(x, y) for x, y in e.shape_xy]
            cum = [0.0]
            for (x0, y0), (x1, y1) in zip(e.shape_xy, e.shape_xy[1:], strict=False):
                cum.append(cum[-1] + math.hypot(x1 - x0, y1 - y0))
            self.edge_lonlat[eid] = pts
            self.edge_cum[eid] = cum
        self.node_lonlat = {n: self.lonlat(x, y) for n, (x, y) in net.nodes_xy.items()}
        self.lane_edge = {f"{eid}_{k}": eid for eid, e in net.edges.items() for k in range(e.lanes)}
        self.geojson = self._geojson()

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        lon, lat = self.proj.xy_to_lonlat(x, y)
        return (round(lon, COORD_DIGITS), round(lat, COORD_DIGITS))

    def point_on_edge(self, edge: str, pos_m: float) -> tuple[float, float] | None:
        """Where ``pos_m`` metres along ``edge`` is (inside a junction: its node)."""
        pts = self.edge_lonlat.get(edge)
        if pts is None:
            if edge.startswith(":"):
                return self.node_lonlat.get(edge[1:].rsplit("_", 1)[0])
            return None
        cum = self.edge_cum[edge]
        total = cum[-1]
        length = self.city.net.edges[edge].length_m
        s = min(max(pos_m * (total / length if length > 0 else 1.0), 0.0), total)
        for k in range(1, len(cum)):
            if s <= cum[k] or k == len(cum) - 1:
                seg = cum[k] - cum[k - 1]
                f = (s - cum[k - 1]) / seg if seg > 0 else 0.0
                (a, b), (c, d) = pts[k - 1], pts[k]
                return (round(a + f * (c - a), COORD_DIGITS), round(b + f * (d - b), COORD_DIGITS))
        return pts[0]

    def _geojson(self) -> dict[str, Any]:
        m = self.city.manifest
        net = self.city.net
        features: list[dict[str, Any]] = []
        for eid, e in net.edges.items():
            features.append(_feature("LineString", [list(p) for p in self.edge_lonlat[eid]], {
                "kind": "edge", "id": eid, "name": e.name, "lanes": e.lanes,
                "speed_mps": e.speed_mps, "length_m": e.length_m,
                "from": e.from_node, "to": e.to_node,
            }))  # fmt: skip
        for s in m.signals:
            greens = [p for p in s.phases if p.kind == "green"]
            features.append(_feature("Point", list(self.lonlat(s.x, s.y)), {
                "kind": "signal", "id": s.id, "node": s.node, "cycle_s": s.cycle_s,
                "offset_s": s.offset_s, "approach_edges": list(s.approach_edges),
                "stages": [{"stage": k, "phase": p.index, "name": p.name, "state": p.state,
                            "green_s": p.duration_s, "min_green_s": p.min_green_s,
                            "max_green_s": p.max_green_s} for k, p in enumerate(greens)],
                "phases": [p.model_dump() for p in s.phases],
            }))  # fmt: skip
        for p in m.pois:
            features.append(_feature("Point", list(self.lonlat(p.x, p.y)), {
                "kind": "poi", "id": p.id, "role": p.role, "name": p.name, "edge": p.edge,
                "capacity_veh": p.capacity_veh,
            }))  # fmt: skip
        for v in m.vms:
            features.append(_feature("Point", list(self.lonlat(v.x, v.y)), {
                "kind": "vms", "id": v.id, "edge": v.edge, "junction": v.junction,
            }))  # fmt: skip
        for z in m.zones:
            ring = [list(self.lonlat(x, y)) for x, y in z.polygon_xy]
            if ring and ring[0] != ring[-1]:
                ring.append(ring[0])
            features.append(_feature("Polygon", [ring], {
                "kind": "zone", "id": z.id, "zone": z.kind, "name": z.name,
            }))  # fmt: skip
        # the box of everything drawn: the city's box and the lanes' offsets past it
        x0, y0, x1, y1 = m.bbox_xy
        lo, la = self.lonlat(x0, y0)
        hi, ha = self.lonlat(x1, y1)
        box = [min(lo, hi), min(la, ha), max(lo, hi), max(la, ha)]
        for pts in self.edge_lonlat.values():
            for lon, lat in pts:
                box = [min(box[0], lon), min(box[1], lat), max(box[2], lon), max(box[3], lat)]
        return {
            "type": "FeatureCollection",
            "bbox": box,
            "properties": {"city": self.city.name, "signals": len(m.signals),
                           "edges": len(net.edges)},
            "features": features,
        }  # fmt: skip


def _feature(kind: str, coordinates: Any, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates},
            "properties": properties}  # fmt: skip


_geometries: dict[Path, CityGeometry] = {}
_geo_lock = threading.Lock()


def geometry_of(city: City) -> CityGeometry:
    """The city's geometry (computed once per city folder)."""
    path = Path(city.path).resolve()
    with _geo_lock:
        found = _geometries.get(path)
    if found is None:
        found = CityGeometry(city)
        with _geo_lock:
            _geometries[path] = found
    return found


def _city_by_id(principal: Principal, city: str) -> City:
    door = principal.door
    if door is None:  # pragma: no cover (the API's principals carry it)
        raise ConflictError("No door.")
    spec = validate_spec(scenario_raw(door.engine, principal.tenant, "baseline"))
    try:
        limit = quotas.tenant_quotas(principal).max_city_signals
        return resolve_city(door.engine, principal.tenant, spec, city, door.cities,
                            max_signals=limit)  # fmt: skip
    except BodyScenarioError as exc:
        raise NotFoundError(str(exc)) from None


@router.get(
    "/v1/cities/{city}/geojson",
    responses=responses(401, 403, 404, 422, 429),
    tags=["cities"],
)
def city_geojson(
    principal: CityRead,
    city: Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")],
) -> JSONResponse:
    """The city's map in lon/lat (GeoJSON): edges, signals with their plans, POIs, VMS
    sites, zones; ``bbox`` is the city's box."""
    found = _city_by_id(principal, city)
    return JSONResponse(geometry_of(found).geojson, media_type="application/geo+json")


# ----------------------------------------------------------------------------- sessions


def _sessions(principal: Principal) -> Any:
    door = principal.door
    manager = door.sessions if door is not None else None
    if manager is None:
        raise ConflictError("Interactive sessions are not enabled on this server.")
    return manager


def _session_city(principal: Principal, sid: str) -> City:
    """The city a session runs on (the one the API resolved when it was created)."""
    manager = _sessions(principal)
    try:
        manager.info(sid, owner=principal.tenant)
    except TwinError:
        raise NotFoundError(f"No session {sid!r}.") from None
    handle = manager._sessions.get(sid)
    name = str(handle.layout.get("city", "")) if handle is not None else ""
    door = principal.door
    cache = getattr(door.cities, "_cities", {}) if door is not None else {}
    for city in list(cache.values()):
        if city.name == name:
            return city  # type: ignore[no-any-return]
    return _city_by_id(principal, name)


class SessionSource:
    """A session read through the manager's public calls: ``observe`` (signals, queues)
    and, where the session offers it, ``map_state`` (vehicles, EVs, incidents, VMS)."""

    def __init__(self, principal: Principal, sid: str) -> None:
        self.principal = principal
        self.sid = sid
        self.manager = _sessions(principal)
        self.geo = geometry_of(_session_city(principal, sid))
        self.has_map_state = True
        self.events_after = 0
        self.incidents: dict[str, Any] = {}
        self.vms: dict[str, Any] = {}
        self.tracks: dict[str, list[list[float]]] = {}

    def t_s(self) -> float:
        return float(self.manager.info(self.sid, owner=self.principal.tenant).t_s)

    def _call(self, op: str, **payload: Any) -> Any:
        try:
            return self.manager.call(self.sid, op, owner=self.principal.tenant, **payload)
        except TwinError as exc:
            if str(exc).startswith("no session"):
                raise NotFoundError(f"No session {self.sid!r}.") from None
            raise

    def frame(self) -> dict[str, Any]:
        """A full frame of the session now, for this principal's role."""
        obs = self._call("observe")
        state: dict[str, Any] | None = None
        if self.has_map_state:
            try:
                state = self._call("map_state", after=self.events_after)
            except TwinError as exc:
                if "unknown session operation" not in str(exc):
                    raise
                self.has_map_state = False
                log.info("session %s has no map_state: vehicles are not shown", self.sid)
        return session_frame(self.geo, obs, state, role=self.principal.role, source=self)


def session_frame(
    geo: CityGeometry,
    obs: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    *,
    role: str,
    source: SessionSource | None = None,
) -> dict[str, Any]:
    """One frame from an observation (and a ``map_state`` if any), for ``role``."""
    t_s = float(obs["t_s"])
    signals = {tls: _signal_entry(s, t_s) for tls, s in dict(obs.get("signals", {})).items()}
    queues: dict[str, float] = {}
    for lane, halting in dict(obs.get("lane_halting_veh", {})).items():
        edge = geo.lane_edge.get(lane, lane.rsplit("_", 1)[0])
        if isinstance(halting, int | float) and math.isfinite(halting):
            queues[edge] = queues.get(edge, 0.0) + float(halting)
    frame: dict[str, Any] = {
        "source": "session",
        "t_s": t_s,
        "done": bool(obs.get("done", False)),
        "signals": signals,
        "queues": {e: round(q, 1) for e, q in queues.items()},
        "vehicles_shown": role in VEHICLE_ROLES,
        "vehicles_available": state is not None,
    }
    if state is None:
        frame.update(vehicles={}, evs={}, incidents={}, vms={}, counts={})
        return frame
    ev_ids = set(state.get("evs", ()))
    vehicles: dict[str, list[Any]] = {}
    evs: dict[str, dict[str, Any]] = {}
    running = 0
    for vid, edge, pos_m in state.get("vehicles", ()):
        running += 1
        where = geo.point_on_edge(str(edge), float(pos_m))
        if where is None:
            continue
        if vid in ev_ids:
            evs[str(vid)] = {"lon": where[0], "lat": where[1], "edge": edge}
        else:
            vehicles[str(vid)] = [where[0], where[1]]
    incidents, vms = _events(geo, state.get("events", ()), source)
    if source is not None and isinstance(state.get("events_next"), int):
        source.events_after = int(state["events_next"])
    frame["counts"] = {"running": running, "evs": len(evs),
                       "halting": round(sum(queues.values()), 1)}  # fmt: skip
    frame["incidents"] = incidents
    frame["vms"] = vms
    if role in VEHICLE_ROLES:
        if source is not None:
            for vid, ev in evs.items():
                track = source.tracks.setdefault(vid, [])
                if not track or track[-1] != [ev["lon"], ev["lat"]]:
                    track.append([ev["lon"], ev["lat"]])
                ev["track"] = list(track[-300:])
        frame["vehicles"] = vehicles
        frame["evs"] = evs
    else:  # de-identified: no vehicle, no EV (docs/API.md); counts and queues only
        frame["vehicles"] = {}
        frame["evs"] = {}
    return frame


def _events(
    geo: CityGeometry, events: Any, source: SessionSource | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open incidents and shown VMS messages, from the session's event log."""
    incidents: dict[str, Any] = dict(source.incidents) if source is not None else {}
    vms: dict[str, Any] = dict(source.vms) if source is not None else {}
    for e in events if isinstance(events, list) else []:
        kind = str(e.get("kind", ""))
        if kind in ("incident_start", "injected_incident"):
            iid = str(e.get("incident") or e.get("id") or f"i{len(incidents) + 1}")
            edge = str(e.get("edge", ""))
            length = geo.city.net.edges[edge].length_m if edge in geo.city.net.edges else 0.0
            pos = e.get("pos_m")
            where = geo.point_on_edge(edge, float(pos) if pos is not None else length / 2)
            incidents[iid] = {
                "edge": edge,
                "lon": where[0] if where else None,
                "lat": where[1] if where else None,
                "closed_lanes": e.get("lanes_closed", e.get("closed_lanes")),
                "since_s": e.get("t_s"),
            }
        elif kind == "incident_end":
            incidents.pop(str(e.get("incident") or e.get("id")), None)
        elif kind == "vms_message":
            vms[str(e.get("sign"))] = {"text": str(e.get("text", "")), "since_s": e.get("t_s")}
    if source is not None:
        source.incidents, source.vms = incidents, vms
    return incidents, vms


def _signal_entry(s: Mapping[str, Any], t_s: float) -> dict[str, Any]:
    """A signal's state in a frame: what changes only when the signal changes
    (``entered_s`` instead of the time in the interval, so a steady signal is no delta)."""
    entered = t_s - float(s.get("time_in_interval_s") or 0.0)
    return {
        "interval": s.get("interval"),
        "stage": s.get("stage"),
        "target": s.get("target"),
        "entered_s": round(entered, 1),
        "next_change_s": _round(s.get("next_change_s")),
        "min_end_s": _round(s.get("min_end_s")),
        "priority_stage": s.get("priority_stage"),
        "local": bool(s.get("local", False)),
        "state": s.get("state"),
        "queue_veh": _round(s.get("queue_veh")),
    }


def _round(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return round(float(value), 1)
    return None


# ----------------------------------------------------------------------------- deltas


def delta(prev: Mapping[str, Any], cur: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from ``prev`` to ``cur``: per section (signals, vehicles, ...) the
    entries that are new or changed (for a signal: only its changed fields) and
    ``removed`` (section -> keys gone); other top-level fields only when changed;
    ``t_s`` always."""
    out: dict[str, Any] = {"t_s": cur.get("t_s")}
    removed: dict[str, list[str]] = {}
    for key, value in cur.items():
        if key in DELTA_SECTIONS and isinstance(value, dict):
            before = prev.get(key) or {}
            changed: dict[str, Any] = {}
            for k, v in value.items():
                old = before.get(k)
                if old == v:
                    continue
                if key == "signals" and isinstance(old, dict) and isinstance(v, dict):
                    changed[k] = {f: x for f, x in v.items() if old.get(f) != x}
                else:
                    changed[k] = v
            gone = [k for k in before if k not in value]
            if changed:
                out[key] = changed
            if gone:
                removed[key] = gone
        elif key != "t_s" and prev.get(key) != value:
            out[key] = value
    if removed:
        out["removed"] = removed
    return out


def is_empty(d: Mapping[str, Any]) -> bool:
    return set(d) <= {"t_s"}


# ----------------------------------------------------------------------------- routes


@router.get("/v1/sessions/{sid}/map/geojson", tags=["sessions"],
            responses=responses(401, 403, 404, 409, 429))  # fmt: skip
def session_geojson(sid: str, principal: SessionUse) -> JSONResponse:
    """The session's city in lon/lat (as ``/v1/cities/{city}/geojson``)."""
    geo = geometry_of(_session_city(principal, sid))
    return JSONResponse(geo.geojson, media_type="application/geo+json")


@router.get("/v1/sessions/{sid}/map/frame", tags=["sessions"],
            responses=responses(401, 403, 404, 409, 429))  # fmt: skip
def session_map_frame(sid: str, principal: SessionUse) -> dict[str, Any]:
    """The session's map now: signals, queues, and for the roles that may see them
    vehicles and EVs; incidents and VMS messages (no simulated time passes)."""
    return SessionSource(principal, sid).frame()


async def _ws_principal(websocket: WebSocket, action: str) -> Principal | None:
    """The stream's principal: the ``Authorization`` header, or else the first message
    ``{"key": KEY}`` (a browser's WebSocket cannot send headers). The same key check,
    request rate and policy as every route; refused: closed with 1008."""
    if websocket.headers.get("authorization"):
        try:
            principal = websocket_principal(websocket, action)
        except TwinError as exc:
            await websocket.close(code=1008, reason=str(exc)[:120])
            return None
        await websocket.accept()
        return principal
    await websocket.accept()
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), KEY_WAIT_S)
        key = str(json.loads(raw).get("key", ""))
        door = websocket.app.state.door
        info, tenant = await run_in_threadpool(authenticate, door.db, door.secret, key.strip())
        door.limiter.take(info.id, tenant.requests_per_min)
        if not allowed(info.role, action):
            raise PermissionError(f"A key with role {info.role!r} may not do {action!r}.")
    except (TwinError, PermissionError, ValueError, AttributeError, TimeoutError) as exc:
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=1008, reason=str(exc)[:120] or "no key")
        return None
    except WebSocketDisconnect:
        return None
    return Principal(tenant=tenant.name, role=info.role, key_id=info.id, door=door)


async def _send(websocket: WebSocket, msg: Mapping[str, Any]) -> None:
    await websocket.send_text(json.dumps(msg, separators=(",", ":")))


@router.websocket("/v1/sessions/{sid}/map/stream")
async def session_map_stream(
    websocket: WebSocket, sid: str, hz: Annotated[float, Query(gt=0.0, le=MAX_HZ)] = MAX_HZ
) -> None:
    """Follow a session: a ``key`` frame (everything), then a ``delta`` frame (only what
    changed) each time the session's simulated time moves, at most ``hz`` a second;
    ``{"type": "end"}`` when the session is gone. Whoever advances the session (its
    HTTP routes, its own stream, a client) moves the map."""
    principal = await _ws_principal(websocket, "sessions:use")
    if principal is None:
        return
    try:
        source = await run_in_threadpool(SessionSource, principal, sid)
        last = await run_in_threadpool(source.frame)
    except TwinError as exc:
        await _send(websocket, {"type": "error", "error": str(exc)})
        await websocket.close(code=1008)
        return
    await _follow(websocket, source, last, hz)


async def _follow(websocket: WebSocket, source: Any, last: dict[str, Any], hz: float) -> None:
    seq = 0
    await _send(websocket, {"type": "key", "seq": seq, **last})
    t_last = float(last["t_s"])
    try:
        while True:
            await asyncio.sleep(1.0 / hz)
            try:
                t_now = await run_in_threadpool(source.t_s)
            except TwinError:
                await _send(websocket, {"type": "end", "t_s": t_last})
                await websocket.close()
                return
            if t_now == t_last and not getattr(source, "always", False):
                continue
            try:
                cur = await run_in_threadpool(source.frame)
            except TwinError as exc:
                await _send(websocket, {"type": "end", "t_s": t_last, "error": str(exc)})
                await websocket.close()
                return
            t_last = float(cur["t_s"])
            change = delta(last, cur)
            last = cur
            if is_empty(change):
                continue
            seq += 1
            await _send(websocket, {"type": "delta", "seq": seq, **change})
    except (WebSocketDisconnect, RuntimeError):
        return


# ----------------------------------------------------------------------------- live


def _live(websocket_or_request: Any, principal: Principal) -> Any:
    svc = getattr(websocket_or_request.app.state, "live", None)
    if svc is None:
        raise ConflictError("No live service runs in this server ('twin live').")
    if principal.tenant != svc.opt.tenant:
        raise NotFoundError("No live service for this tenant.")
    return svc


@router.get("/v1/live/map/geojson", tags=["live"], responses=responses(401, 403, 404, 409, 429))
def live_geojson(request: Request, principal: LiveSpat) -> JSONResponse:
    """The live service's city in lon/lat."""
    svc = _live(request, principal)
    return JSONResponse(geometry_of(svc.city).geojson, media_type="application/geo+json")


class LiveSource:
    """The live service's state for the map: every signal from the guard (as SPaT is),
    queues from the center's estimate, EVs on their missions (by role)."""

    always = True

    def __init__(self, svc: Any, principal: Principal) -> None:
        self.svc = svc
        self.principal = principal
        self.geo = geometry_of(svc.city)
        self.tracks: dict[str, list[list[float]]] = {}

    def t_s(self) -> float:
        return float(self.svc.clock.now_s())

    def frame(self) -> dict[str, Any]:
        loop = self.svc.loop
        if loop is None:
            return live_frame(self, snapshot_live(self.svc))
        fut = asyncio.run_coroutine_threadsafe(_on_loop(snapshot_live, self.svc), loop)
        return live_frame(self, fut.result(5.0))


async def _on_loop(fn: Any, *args: Any) -> Any:
    return fn(*args)


def snapshot_live(svc: Any) -> dict[str, Any]:
    """What the map needs from the live service (on its own loop: a consistent view)."""
    now = float(svc.clock.now_s())
    port = svc.port
    signals: dict[str, Any] = {}
    if port is not None:
        for tls in port.ids:
            s = port.status(tls)
            signals[tls] = {
                "interval": s.interval, "stage": s.stage, "target": s.target,
                "time_in_interval_s": now - s.entered_s, "next_change_s": s.next_change_s,
                "min_end_s": s.min_end_s, "priority_stage": s.priority_stage,
                "local": s.local or tls in port.down,
                "state": port.plan(tls).show(s.interval, s.stage, s.target),
                "queue_veh": svc._queue_veh(svc.signal_specs[tls].incoming_lanes)
                if tls in svc.signal_specs else None,
            }  # fmt: skip
    evs: dict[str, Any] = {}
    center = getattr(svc, "center", None)
    for vid, track in dict(getattr(center, "tracks", {}) or {}).items():
        if vid not in svc.missions or track.tracker is None or track.matcher is None:
            continue
        s_m = track.tracker.s_m
        xy = track.matcher.point_at(s_m) if s_m is not None else None
        evs[vid] = {"agency": svc.missions[vid].agency, "kind": track.kind,
                    "xy": xy, "stale": track.stale,
                    "signals": [getattr(x, "tls", None) for x in track.signals]}  # fmt: skip
    return {"t_s": now, "signals": signals, "evs": evs}


def live_frame(source: LiveSource, snap: Mapping[str, Any]) -> dict[str, Any]:
    role = source.principal.role
    t_s = float(snap["t_s"])
    signals = {t: _signal_entry(s, t_s) for t, s in snap["signals"].items()}
    evs: dict[str, Any] = {}
    for vid, ev in snap["evs"].items():
        # operator: every EV; fire: its own agency's (as the audit's visible_to)
        if not (role == "operator" or (role == ev["agency"] and role == "fire")):
            continue
        entry: dict[str, Any] = {"agency": ev["agency"], "kind": ev["kind"],
                                 "stale": ev["stale"], "signals": ev["signals"]}  # fmt: skip
        if ev["xy"] is not None:
            lon, lat = source.geo.lonlat(*ev["xy"])
            entry.update(lon=lon, lat=lat)
            track = source.tracks.setdefault(vid, [])
            if not track or track[-1] != [lon, lat]:
                track.append([lon, lat])
            entry["track"] = list(track[-300:])
        evs[vid] = entry
    return {
        "source": "live",
        "t_s": round(t_s, 1),
        "done": False,
        "signals": signals,
        "queues": {},
        "vehicles": {},
        "evs": evs,
        "incidents": {},
        "vms": {},
        "counts": {"evs": len(evs)},
        "vehicles_shown": False,
        "vehicles_available": False,
    }


@router.websocket("/v1/live/map/stream")
async def live_map_stream(
    websocket: WebSocket, hz: Annotated[float, Query(gt=0.0, le=MAX_HZ)] = MAX_HZ
) -> None:
    """Follow the live service: a key frame, then deltas at most ``hz`` a second (only
    when something changed). The signal panel reads SPaT from ``GET /v1/live/spat``."""
    principal = await _ws_principal(websocket, "live:spat")
    if principal is None:
        return
    try:
        source = LiveSource(_live(websocket, principal), principal)
        last = await run_in_threadpool(source.frame)
    except TwinError as exc:
        await _send(websocket, {"type": "error", "error": str(exc)})
        await websocket.close(code=1008)
        return
    await _follow(websocket, source, last, hz)
