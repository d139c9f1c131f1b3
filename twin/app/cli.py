"""The ``twin`` command line. An entry point: it may import every package.

Contract other tools rely on: ``twin run ... --json`` prints one JSON object (with at
least ``run_id``, ``status``, ``metrics``) as the last line on stdout; progress and
messages go to stderr. Exit codes: 0 done, 1 the run failed (recorded), 2 bad input.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from city_models.presets import PRESETS
from twin.config import Settings, load_settings
from twin.errors import TwinError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CityTwin: a SUMO traffic twin.")
city_app = typer.Typer(no_args_is_help=True, help="Build and inspect city models.")
runs_app = typer.Typer(no_args_is_help=True, help="List and show recorded runs.")
admin_app = typer.Typer(no_args_is_help=True, help="Tenants and API keys of the HTTP API.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (organisations with keys).")
key_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke, rotate.")
app.add_typer(city_app, name="city")
app.add_typer(runs_app, name="runs")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(tenant_app, name="tenant")
admin_app.add_typer(key_app, name="key")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # never break a path across lines
log = logging.getLogger("twin")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory [env CITYTWIN_DATA].")
]
DbUrl = Annotated[
    str | None, typer.Option("--db", help="Run store URL, SQLite or PostgreSQL [env CITYTWIN_DB].")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON (last stdout line).")]


def _settings(data_dir: Path | None, db: str | None) -> Settings:
    return load_settings(data_dir=data_dir, db_url=db)


# ----------------------------------------------------------------------------- city
@city_app.command("build")
def city_build(
    preset: Annotated[str, typer.Option(help=" | ".join(PRESETS))] = "district",
    seed: Annotated[int, typer.Option(help="Layout seed.")] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Build into this folder.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Build a synthetic city (cached by its inputs' hash)."""
    from city_models.build import build_city

    settings = _settings(data_dir, None)
    with err.status("building city…") as status:
        city = build_city(
            preset, seed=seed, out=out_dir, cities_dir=settings.cities_dir, force=force,
            progress=status.update,
        )  # fmt: skip
    m = city.manifest
    info = {"path": str(city.path), "name": m.name, "content_hash": m.content_hash, **m.counts}
    if as_json:
        typer.echo(json.dumps(info))
        return
    table = Table(title=f"City {m.name}", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    table.add_row("note", m.note)
    out.print(table)
    out.print(f"Open it in sumo-gui: sumo-gui -c {city.sumocfg_path}")


# ----------------------------------------------------------------------------- import
import_app = typer.Typer(
    no_args_is_help=True,
    help="Import a real city: OpenStreetMap, an engineer's SUMO model, Korean node-link.",
)
city_app.add_typer(import_app, name="import")
PoisOpt = Annotated[
    Path | None,
    typer.Option("--pois", help="POIS.toml: [[pois]] id, kind, lat, lon, name, capacity."),
]
FloodOpt = Annotated[
    Path | None, typer.Option("--flood", help="GeoJSON polygon (lon/lat) of the flood zone.")
]
PeakOpt = Annotated[
    int | None,
    typer.Option(
        "--peak-trips-per-h", help="Peak-hour trips of the OD model (default: by lane-km)"
    ),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="City name.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Import into this folder.")]
ForceOpt = Annotated[bool, typer.Option(help="Import again even if cached.")]
BboxOpt = Annotated[
    str | None, typer.Option("--bbox", help="S,W,N,E in degrees (south, west, north, east).")
]


def _import(kind: str, *, data_dir: Path | None, as_json: bool, out_dir: Path | None,
            force: bool, pois: Path | None, flood: Path | None, peak: int | None,
            at: dict[str, float] | None = None, **args: Any) -> None:  # fmt: skip
    from city_models.importing import import_city
    from city_models.pipeline import PipelineOptions, read_report

    settings = _settings(data_dir, None)
    options = PipelineOptions(pois_toml=pois, flood_geojson=flood, peak_trips_per_h=peak)
    if at:
        options = replace(options, origin_lat=at["origin_lat"], origin_lon=at["origin_lon"])
    with err.status(f"importing {kind}…") as status:
        city = import_city(
            kind, out=out_dir, cities_dir=settings.cities_dir, options=options, force=force,
            progress=status.update, **args,
        )  # fmt: skip
    report = read_report(city)
    m = city.manifest
    info: dict[str, Any] = {"path": str(city.path), "name": m.name, **m.counts}
    keys = ("lane_km", "signals_guessed", "signals_joined", "signals_unset_single_stage",
            "osm_signal_nodes", "pois_missing", "edges_outside_core", "georeferenced",
            "input_format", "signals_kept", "signals_source", "crs")  # fmt: skip
    info.update({k: report[k] for k in keys if k in report})
    if as_json:
        typer.echo(json.dumps({**info, "report": report}, ensure_ascii=False))
        return
    table = Table(title=f"City {m.name} ({kind} import)", show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    for row in report.get("pois", []):
        table.add_row(
            f"poi {row['id']}", f"{row['name']} -> edge {row['edge']} ({row['snap_m']} m)"
        )
    out.print(table)
    if report.get("hint"):
        err.print(f"[yellow]{rich_escape(report['hint'])}[/yellow]")
    out.print(f"Import report: {city.path / 'import_report.json'}")
    out.print(f"Run a scenario on it: twin run ev_priority --city {city.path}")
    out.print(f"Open it in sumo-gui: sumo-gui -c {city.sumocfg_path}")


@import_app.command("osm")
def import_osm(
    file: Annotated[Path, typer.Argument(help="FILE.osm, FILE.osm.pbf or an Overpass export.")],
    bbox: BboxOpt = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import an OpenStreetMap extract (XML, PBF, Overpass 'out geom')."""
    from city_models.importing import parse_bbox

    _import("osm", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force,
            pois=pois, flood=flood, peak=peak_trips_per_h, src=file, bbox=parse_bbox(bbox),
            name=name)  # fmt: skip


@import_app.command("sumo")
def import_sumo(
    net: Annotated[
        Path | None, typer.Argument(help="NET.net.xml[.gz] (or give --sumocfg).")
    ] = None,
    routes: Annotated[list[Path] | None, typer.Option("--routes", help="Route file(s).")] = None,
    additional: Annotated[
        list[Path] | None, typer.Option("--additional", help="Additional file(s), POIs too.")
    ] = None,
    sumocfg: Annotated[Path | None, typer.Option("--sumocfg", help="The model's .sumocfg.")] = None,
    redesign_signals: Annotated[
        bool, typer.Option(help="Replace every program with a Korean-practice plan.")
    ] = False,
    origin: Annotated[
        str | None,
        typer.Option("--origin", help="LAT,LON to place a net without a geo-reference."),
    ] = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import an engineer's SUMO model: its programs stay the fixed plan, its demand stays."""
    if net is None and sumocfg is None:
        raise typer.BadParameter("give NET.net.xml or --sumocfg C.sumocfg")
    at: dict[str, float] = {}
    if origin is not None:
        try:
            lat, lon = (float(v) for v in origin.split(","))
        except ValueError:
            raise typer.BadParameter(f"--origin {origin!r}: expected LAT,LON in degrees") from None
        at = {"origin_lat": lat, "origin_lon": lon}
    _import("sumo", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force, pois=pois,
            flood=flood, peak=peak_trips_per_h, at=at, net=net, routes=routes or [],
            additional=additional or [], sumocfg=sumocfg, redesign_signals=redesign_signals,
            name=name)  # fmt: skip


@import_app.command("nodelink")
def import_nodelink(
    node: Annotated[Path, typer.Option("--node", help="MOCT_NODE.shp")],
    link: Annotated[Path, typer.Option("--link", help="MOCT_LINK.shp")],
    turninfo: Annotated[Path | None, typer.Option("--turninfo", help="TURNINFO.dbf")] = None,
    bbox: BboxOpt = None,
    region_code: Annotated[
        str | None, typer.Option("--region-code", help="Keep ids starting with this code.")
    ] = None,
    signals_from: Annotated[
        Path | None, typer.Option("--signals-from", help="OSM file: its traffic_signals nodes.")
    ] = None,
    signals_csv: Annotated[
        Path | None, typer.Option("--signals-csv", help="CSV with a NODE_ID column.")
    ] = None,
    name: NameOpt = None,
    out_dir: OutOpt = None,
    pois: PoisOpt = None,
    flood: FloodOpt = None,
    peak_trips_per_h: PeakOpt = None,
    force: ForceOpt = False,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Import the Korean standard node-link (MOCT shapefiles)."""
    from city_models.importing import parse_bbox

    _import("nodelink", data_dir=data_dir, as_json=as_json, out_dir=out_dir, force=force,
            pois=pois, flood=flood, peak=peak_trips_per_h, node=node, link=link,
            turninfo=turninfo, bbox=parse_bbox(bbox), region_code=region_code,
            signals_from=signals_from, signals_csv=signals_csv, name=name)  # fmt: skip


# ----------------------------------------------------------------------------- run
def _resolve_city(spec: Any, city_dir: Path | None, settings: Settings) -> Any:
    from city_models.build import build_city, load_city

    if city_dir is not None:
        return load_city(city_dir)
    if spec.city.path:
        return load_city(Path(spec.city.path))
    with err.status(f"preparing city {spec.city.preset} (seed {spec.city.seed})…") as status:
        return build_city(
            spec.city.preset, seed=spec.city.seed, cities_dir=settings.cities_dir,
            progress=status.update,
        )  # fmt: skip


@app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="Scenario TOML file, or a shipped name.")],
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    report: Annotated[bool, typer.Option(help="Write summary.html/png.")] = True,
    gui: Annotated[bool, typer.Option(help="Watch it in sumo-gui (traci).")] = False,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Run a scenario; records the run and prints its metrics."""
    from scenarios.loader import load_scenario
    from twin.app.compose import execute_request, run_request
    from twin.engine.executors import LocalProcess

    settings = _settings(data_dir, db)
    spec = load_scenario(scenario)
    if gui:
        spec = spec.model_copy(update={"sim": spec.sim.model_copy(update={"backend": "traci"})})
    if seed is not None and seed < 0:
        raise typer.BadParameter(f"--seed must be >= 0 (got {seed})")
    run_seed = spec.seed if seed is None else seed
    city = _resolve_city(spec, city_dir, settings)
    if city_dir is not None:  # the record names the city that ran, not the file's preset
        spec = spec.model_copy(
            update={"city": spec.city.model_copy(update={"path": str(city.path.resolve())})}
        )
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.fields[sim]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"{spec.name} on {city.name}", total=spec.sim.duration_s, sim="")

        def on_progress(done_s: float, total_s: float) -> None:
            bar.update(task, completed=done_s, sim=f"{done_s:.0f}/{total_s:.0f} s sim")

        with LocalProcess(settings, execute_request) as executor:
            run_id = executor.submit(run_request(spec, city, seed=run_seed, gui=gui))
            try:
                record = executor.wait(run_id, progress=on_progress)
            except KeyboardInterrupt:
                err.print(f"Interrupted: run {run_id} was stopped and recorded as failed.")
                raise typer.Exit(130) from None
    files: dict[str, str] = {}
    if report and record.run_dir is not None:
        files = _write_report(record, settings)
    payload = {**record.to_dict(), "run_id": record.id, **files}
    if as_json:
        typer.echo(json.dumps(payload, default=str))
    else:
        _print_run(record, files)
    if record.status != "done":
        raise typer.Exit(1)


def _write_report(record: Any, settings: Settings) -> dict[str, str]:
    from twin.engine.store import RunStore
    from viz.summary import write_summary

    store = RunStore.from_settings(settings)
    try:
        frames = {}
        for name in ("network", "queues"):
            if f"{name}.parquet" in record.series_files:
                frames[name] = store.read_series(record.id, name)
        files = write_summary(
            run=record.to_dict(), series=frames.get("network"), queues=frames.get("queues"),
            out_dir=record.run_dir,
        )  # fmt: skip
    finally:
        store.close()
    return {"summary_html": str(files.html), "summary_png": str(files.png)}


def _print_run(record: Any, files: dict[str, str]) -> None:
    table = Table(title=f"Run {record.id} — {record.scenario_name} on {record.city_name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in (record.metrics or {}).items():
        if isinstance(value, dict):
            continue
        shown = (
            f"{value:,.2f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )
        table.add_row(key, shown)
    out.print(table)
    out.print(
        f"status: [bold]{record.status}[/bold]  seed: {record.seed}  run dir: {record.run_dir}"
    )
    if record.error:
        err.print(f"[red]error:[/red] {rich_escape(record.error)}")
    for name, path in files.items():
        out.print(f"{name}: {path}")


# ----------------------------------------------------------------------------- runs
@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many of the newest first.")] = 0,
    status: Annotated[str | None, typer.Option(help="queued | running | done | failed")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this scenario kind.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only runs of this owner.")] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """List recorded runs, newest first (queued ones included)."""
    from twin.engine.store import RunStore

    store = RunStore.from_settings(_settings(data_dir, db))
    try:
        records = store.list(offset=offset, limit=limit, status=status, kind=kind, owner=owner)
        total = store.count(status=status, kind=kind, owner=owner)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], default=str))
        return
    shown = f"{offset + 1}-{offset + len(records)} of {total}" if records else f"none of {total}"
    table = Table(title="Runs", caption=f"runs {shown}, newest first")
    table.add_column("id", no_wrap=True)  # what users copy: never cut
    table.add_column("status", no_wrap=True)
    for col in ("scenario", "city", "seed", "mean delay s", "created", "owner"):
        table.add_column(col)
    for r in records:
        delay = (r.metrics or {}).get("mean_delay_s")
        table.add_row(r.id, r.status, r.scenario_name, r.city_name, str(r.seed),
                      f"{delay:.1f}" if isinstance(delay, float) else "-",
                      r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.owner or "-")  # fmt: skip
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (>= 4 chars).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Show one run: its spec, versions, status, error and metrics."""
    from twin.engine.store import RunStore

    store = RunStore.from_settings(_settings(data_dir, db))
    record = store.get(run_id)
    store.close()
    if as_json:
        typer.echo(json.dumps({**record.to_dict(), "run_id": record.id}, default=str))
        return
    _print_run(record, {})
    out.print_json(json.dumps({"spec": record.spec, "versions": record.versions}))


# ----------------------------------------------------------------------------- serve
@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="HTTP worker processes.")] = 1,
    run_workers: Annotated[
        int | None, typer.Option(help="Runs at once [env CITYTWIN_RUN_WORKERS; default: cores].")
    ] = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Serve the sandbox HTTP API (OpenAPI page at /docs): runs from a queue in the run
    store, each in its own worker process."""
    from twin.app.api.server import serve as serve_api

    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"--port must be 1-65535 (got {port})")
    if workers < 1:
        raise typer.BadParameter(f"--workers must be >= 1 (got {workers})")
    logging.getLogger().setLevel(logging.INFO)
    serve_api(_api_settings(data_dir, db, run_workers=run_workers), host=host, port=port,
              workers=workers)  # fmt: skip


def _api_settings(data_dir: Path | None, db: str | None, **more: Any) -> Any:
    from twin.app.api.settings import load_api_settings

    given = {"data": data_dir, "db": db, **more}
    return load_api_settings(**{k: v for k, v in given.items() if v is not None})


def _api_db(data_dir: Path | None, db: str | None) -> tuple[Any, Any]:
    from twin.app.api.db import ApiDatabase

    settings = _api_settings(data_dir, db)
    return settings, ApiDatabase(settings.engine_settings().db_url)


# ----------------------------------------------------------------------------- admin
@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '_' or '-'.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Create a tenant with the default quotas (docs/API.md)."""
    from twin.app.api.keys import create_tenant

    _, api_db = _api_db(data_dir, db)
    try:
        quotas = create_tenant(api_db, name)
    finally:
        api_db.close()
    err.print(f"tenant {name} created; quotas: {quotas}")
    typer.echo(name)


@tenant_app.command("list")
def tenant_list(data_dir: DataDir = None, db: DbUrl = None) -> None:
    """List the tenants."""
    from twin.app.api.keys import tenant_names

    _, api_db = _api_db(data_dir, db)
    try:
        for name in tenant_names(api_db):
            typer.echo(name)
    finally:
        api_db.close()


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="The key's tenant.")],
    role: Annotated[str, typer.Option(help="operator | fire | police | researcher | admin")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Create an API key; prints it once, alone on the last stdout line."""
    from twin.app.api.keys import create_key

    settings, api_db = _api_db(data_dir, db)
    try:
        info, key = create_key(api_db, settings.secret, tenant=tenant, role=role)
    finally:
        api_db.close()
    err.print(f"key {info.id} ({role}) for tenant {tenant}; shown once, store it now:")
    typer.echo(key)


@key_app.command("list")
def key_list(
    tenant: Annotated[str, typer.Option(help="The tenant whose keys to list.")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """List a tenant's keys (prefixes, never the keys)."""
    from twin.app.api.keys import list_keys

    _, api_db = _api_db(data_dir, db)
    try:
        keys = list_keys(api_db, tenant=tenant)
    finally:
        api_db.close()
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
        typer.echo(f"{k.id}  {k.prefix}...  {k.role}  {state}")


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Revoke a key: every request with it fails from now on."""
    from twin.app.api.keys import revoke_key

    _, api_db = _api_db(data_dir, db)
    try:
        revoke_key(api_db, key_id)
    finally:
        api_db.close()
    err.print(f"key {key_id} revoked")


@key_app.command("rotate")
def key_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Replace a key by a new one (same tenant and role; the old one is revoked at once);
    prints the new key alone on the last stdout line."""
    from twin.app.api.keys import rotate_key

    settings, api_db = _api_db(data_dir, db)
    try:
        info, key = rotate_key(api_db, settings.secret, key_id)
    finally:
        api_db.close()
    err.print(f"key {key_id} revoked; new key {info.id}, shown once, store it now:")
    typer.echo(key)


# ----------------------------------------------------------------------------- live
live_app = typer.Typer(
    invoke_without_command=True,
    help="Live mode: the center loop against field controllers (docs/LIVE.md).",
)
app.add_typer(live_app, name="live")
ClockEpoch = Annotated[
    float | None, typer.Option("--epoch", help="Wall time at which the clock reads --origin.")
]
ClockOrigin = Annotated[float | None, typer.Option("--origin", help="Clock reading at --epoch.")]


@live_app.callback()
def live(
    ctx: typer.Context,
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    field_file: Annotated[Path | None, typer.Option("--field", help="FIELD.toml.")] = None,
    audit: Annotated[Path | None, typer.Option(help="Audit log (default: data dir).")] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="No broker client.")] = False,
    api_port: Annotated[int, typer.Option(help="API port (0: any free one).")] = 8100,
    no_api: Annotated[bool, typer.Option("--no-api", help="Serve no API.")] = False,
    control: Annotated[str, typer.Option(help="fixed | adaptive")] = "fixed",
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Run the shadow twin (SUMO at the clock's pace).")
    ] = False,
    tenant: Annotated[str, typer.Option(help="The API tenant that owns live mode.")] = "city",
    speed: Annotated[float, typer.Option(help="Clock speed (tests, demos).")] = 1.0,
    epoch: ClockEpoch = None,
    origin: ClockOrigin = None,
    data_dir: DataDir = None,
    db: DbUrl = None,
) -> None:
    """Run the live service: ingest GPS and detectors, run the center loop in real time,
    command the controllers of FIELD.toml, publish SPaT; Ctrl-C hands every signal back."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from city_models.build import load_city
    from twin.app.live.clock import LiveClock
    from twin.app.live.emulator import clock_from_args
    from twin.app.live.field import load_field
    from twin.app.live.run import serve_live
    from twin.app.live.service import LiveOptions

    if city_dir is None or field_file is None:
        raise typer.BadParameter("twin live needs --city DIR and --field FIELD.toml")
    if control not in ("fixed", "adaptive"):
        raise typer.BadParameter(f"--control {control!r}; allowed: fixed, adaptive")
    logging.getLogger().setLevel(logging.INFO)
    settings = _settings(data_dir, db)
    api = None if no_api else _api_settings(data_dir, db, run_workers=0)
    secret = (api or _api_settings(data_dir, db)).secret
    city = load_city(city_dir)
    cfg = load_field(field_file, city)
    clock: LiveClock = clock_from_args(epoch, speed, origin)
    options = LiveOptions(
        mqtt_host=None if no_mqtt else mqtt_host, mqtt_port=mqtt_port,
        control=control,  # type: ignore[arg-type]
        tenant=tenant, shadow=shadow,
    )  # fmt: skip
    audit_path = audit or settings.data_dir / "live" / "audit.jsonl"
    summary = asyncio.run(
        serve_live(city, cfg, clock=clock, audit_path=audit_path, secret=secret,
                   options=options, api=api, api_port=api_port)
    )  # fmt: skip
    err.print(f"live service stopped; {summary['audit_records']} audit records written")


@live_app.command("demo")
def live_demo(
    speed: Annotated[float, typer.Option(help="Replay this many times faster.")] = 1.0,
    city_dir: Annotated[Path | None, typer.Option("--city", help="Built city folder.")] = None,
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    workdir: Annotated[Path | None, typer.Option(help="Where the demo writes.")] = None,
    data_dir: DataDir = None,
    as_json: JsonOut = False,
) -> None:
    """Emulator + live service + broker client; an ambulance (from a simulated
    ev_priority run) replayed as GPS; per signal: requested, granted, shown; the EV's
    s/km and the emulator's MMU verdict."""
    import asyncio
    import tempfile

    from city_models.build import build_city, load_city
    from twin.app.live.demo import run_demo

    if not 0.1 <= speed <= 50:
        raise typer.BadParameter(f"--speed must be in [0.1, 50] (got {speed})")
    settings = _settings(data_dir, None)
    if city_dir is not None:
        city = load_city(city_dir)
    else:
        with err.status("preparing city district (seed 1)…"):
            city = build_city("district", seed=1, cities_dir=settings.cities_dir)
    work = workdir or Path(tempfile.mkdtemp(prefix="citytwin-live-demo-"))
    result = asyncio.run(
        run_demo(city, data_dir=settings.data_dir, workdir=work, speed=speed,
                 mqtt_host=mqtt_host, mqtt_port=mqtt_port,
                 say=lambda m: err.print(m, highlight=False))
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.as_dict(), default=str))
    if result.mmu.get("violations", 1) != 0 or not result.audit_ok:
        raise typer.Exit(1)


@app.command("emulate-controllers")
def emulate_controllers(
    city_dir: Annotated[Path, typer.Option("--city", help="Built city folder.")],
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="First UDP port (0: any free ones).")] = 16100,
    admin_port: Annotated[int, typer.Option(help="Admin port (JSON lines over TCP).")] = 16099,
    community: Annotated[str, typer.Option(help="SNMPv2c community.")] = "citytwin",
    backup_time: Annotated[int, typer.Option(help="unitBackupTime at power-up (s).")] = 10,
    write_field: Annotated[
        Path | None, typer.Option(help="Write a FIELD.toml for these controllers.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Clock speed (tests, demos).")] = 1.0,
    epoch: ClockEpoch = None,
    origin: ClockOrigin = None,
) -> None:
    """Serve every city signal as an NTCIP 1202 SNMP agent on loopback, running the city's
    own plans, obeying Hold/ForceOff/VehCall and the backup timer, with its own MMU."""
    import asyncio

    from city_models.build import load_city
    from twin.app.live.emulator import clock_from_args, run_emulator

    logging.getLogger().setLevel(logging.INFO)
    city = load_city(city_dir)
    verdict = asyncio.run(
        run_emulator(city, clock=clock_from_args(epoch, speed, origin), host=host,
                     base_port=base_port, admin_port=admin_port, community=community,
                     backup_time_s=backup_time, field_out=write_field)
    )  # fmt: skip
    err.print(f"MMU verdict: {verdict['violations']} violation(s) in "
              f"{verdict['changes_checked']} changes checked")  # fmt: skip
    if verdict["violations"]:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- main
def main() -> None:
    """Console entry point: user errors become one clear paragraph, exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except TwinError as exc:
        err.print(f"[red]Error:[/red] {rich_escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
